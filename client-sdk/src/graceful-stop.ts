/**
 * A stop with a grace period, as the reserve loop takes it (DESIGN promise
 * 3: a worker told to stop releases what it holds without charging an
 * attempt). It is two signals, so that the loop needs no timer of its own:
 *
 * - `stopSignal` fires at once: reserve nothing more, start no new make;
 * - `cancelSignal` fires when the grace period ends: abort the running
 *   makes' `ctx.signal`, stop waiting for them and give their leases back.
 *
 * A make that finishes within the grace period commits as usual.
 *
 * @internal Not part of the public API.
 */
export class GracefulStop {
  readonly #stop = new AbortController();
  readonly #cancel = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #deadline = Infinity;
  readonly #unfollow: (() => void)[] = [];

  /** Fires at the first request. */
  get stopSignal(): AbortSignal {
    return this.#stop.signal;
  }

  /** Fires when the grace period of the first (or a later, shorter) request ends. */
  get cancelSignal(): AbortSignal {
    return this.#cancel.signal;
  }

  /**
   * Asks to stop, letting running makes finish for `graceS` seconds (0:
   * cancel them now). A later request can only shorten the grace period:
   * a parent that dies after asking for 30 s wants its children out now.
   */
  request(graceS: number): void {
    this.#stop.abort(new Error("the worker is stopping"));
    const deadline = Date.now() + Math.max(0, graceS) * 1000;
    if (this.#cancel.signal.aborted || deadline >= this.#deadline) return;
    this.#deadline = deadline;
    clearTimeout(this.#timer);
    const cancel = () => this.#cancel.abort(new Error("the worker is stopping and the grace period ended"));
    if (graceS <= 0) cancel();
    // Not unref'd: a running make may be waiting on nothing that keeps the
    // process alive, and its lease must still be released when time is up.
    else this.#timer = setTimeout(cancel, graceS * 1000);
  }

  /** Requests a stop with `graceS` when `signal` aborts (at once if it has); dispose() stops listening. */
  follow(signal: AbortSignal | undefined, graceS: number): this {
    if (signal === undefined) return this;
    if (signal.aborted) {
      this.request(graceS);
      return this;
    }
    const onAbort = () => this.request(graceS);
    signal.addEventListener("abort", onAbort, { once: true });
    this.#unfollow.push(() => signal.removeEventListener("abort", onAbort));
    return this;
  }

  /** Clears the grace timer and stops following signals; call when the loop has ended. */
  dispose(): void {
    clearTimeout(this.#timer);
    for (const f of this.#unfollow.splice(0)) f();
  }
}
