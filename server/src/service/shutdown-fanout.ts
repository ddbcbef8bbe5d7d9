/**
 * One listener on the server's shutdown signal for all the calls in flight, instead of one per
 * call. EventTarget's addEventListener and removeEventListener each walk the signal's listeners
 * (to refuse a duplicate), so with many calls held open (idle workers' long-polls, watchers) every
 * call paid two walks over all the others: with 1,000 idle workers' long-polls held, the largest
 * part of the server's own CPU in bench scenario 7.
 */

type OnShutdown = (reason: unknown) => void;

const callsEndedBy = new WeakMap<AbortSignal, Set<OnShutdown>>();

/**
 * Calls `onShutdown` with the signal's reason once it aborts, or at once if it has; answers the
 * function that lets go of it (for a call that ends first).
 */
export function whenShutDown(signal: AbortSignal, onShutdown: OnShutdown): () => void {
  if (signal.aborted) {
    onShutdown(signal.reason);
    return () => {};
  }
  let calls = callsEndedBy.get(signal);
  if (calls === undefined) {
    const ends = new Set<OnShutdown>();
    signal.addEventListener(
      "abort",
      () => {
        for (const end of ends) end(signal.reason);
        ends.clear();
      },
      { once: true },
    );
    callsEndedBy.set(signal, ends);
    calls = ends;
  }
  // A wrapper per call, so that the same function registered twice is two registrations.
  const registration: OnShutdown = (reason) => onShutdown(reason);
  calls.add(registration);
  return () => calls.delete(registration);
}

/** How many calls wait on `signal`'s shutdown now: each lets go once it ends, so none stay. */
export function callsAwaiting(signal: AbortSignal): number {
  return callsEndedBy.get(signal)?.size ?? 0;
}
