/**
 * Scenario 5's watchers, in a process of their own (forked by scenarios.ts with IPC), as the
 * dashboards and tailers they stand for are: so that what they measure is the server's delivery,
 * not the lag of the bench process, which also drives the drain and is the parent of populate's
 * four worker processes.
 *
 *   argv: <server url> <table> <watchers> <one in how many takes job-level events>
 *   → { type: "ready" }                 every stream has had its first message
 *   ← { type: "stop" }                  end the streams
 *   → { type: "done", delays, resumed } the job events' commit-to-arrival delays, as [delay (ms),
 *                                       events] pairs in delay order, and the streams cut for
 *                                       falling behind that resumed
 */
import { setMaxListeners } from "node:events";
import { connect, ResourceExhaustedError } from "../client-sdk/dist/index.js";

const [url, table, watcherArg, everyArg] = process.argv.slice(2);
const watchers = Number(watcherArg);
const eventWatcherEvery = Number(everyArg);
if (url === undefined || table === undefined || !(watchers > 0) || !(eventWatcherEvery > 0)) {
  throw new Error("usage: bench/watchers.js <server url> <table> <watchers> <event watcher every>");
}
/** Sends `message` to the bench; `sent` runs once it has gone (a large one takes more than a tick). */
const send = (/** @type {object} */ message, /** @type {() => void} */ sent = () => undefined) =>
  /** @type {NonNullable<typeof process.send>} */ (process.send)(message, undefined, undefined, sent);

const controller = new AbortController();
setMaxListeners(watchers + 10, controller.signal);
// Ten connections for all of them, as the scenario always had.
const connections = Array.from({ length: 10 }, () => connect({ url }));
/**
 * Job events by their commit-to-arrival delay (ms). A group's events share its commit time, so
 * they are counted per group rather than pushed one by one: parsing every key (JSON.parse) only to
 * count them, and pushing 400,000 delays a drain, took this process about 0.3 s of CPU a drain
 * (a CPU profile of scenario 5), a third of what it spent; that was the harness, not the watching.
 */
/** @type {Map<number, number>} */
const eventsByDelay = new Map();
let groupsCounted = 0;

/**
 * The keys in a group's keys_json. The bench's keys are `{"id": "<int>"}`, with no brace inside
 * a value, so each key opens one brace; one group in 64 is parsed to hold the count to that.
 */
function keyCount(/** @type {string} */ keysJson) {
  let n = 0;
  for (let at = keysJson.indexOf("{"); at !== -1; at = keysJson.indexOf("{", at + 1)) n++;
  if (groupsCounted++ % 64 === 0) {
    const parsed = /** @type {unknown[]} */ (JSON.parse(keysJson)).length;
    if (parsed !== n) throw new Error(`bench/watchers.js: counted ${n} keys in a group of ${parsed}`);
  }
  return n;
}
let ready = 0;
let resumed = 0;
/** @type {NodeJS.CpuUsage | undefined} */
let cpuAtReady;

const streams = Array.from({ length: watchers }, async (_, w) => {
  const countsOnly = w % eventWatcherEvery !== 0;
  let first = true;
  let cursor = "";
  // A tailer that falls too far behind is cut (RESOURCE_EXHAUSTED) and resumes from its cursor, as the SDK's watch() does.
  for (;;) {
    try {
      const rpc = /** @type {import("../client-sdk/dist/index.js").PopulusClient} */ (connections[w % connections.length]).rpc;
      // Event groups, as the SDK's watch() asks for them.
      for await (const m of rpc.watch({ table, countsOnly, groupedEvents: true, cursor }, { signal: controller.signal })) {
        if (first && ++ready === watchers) {
          cpuAtReady = process.cpuUsage();
          send({ type: "ready" });
        }
        first = false;
        cursor = m.cursor;
        if (countsOnly) continue;
        const now = Date.now();
        for (const g of m.eventGroups) {
          if (!g.committed || g.time === undefined) continue;
          const delay = now - (Number(g.time.seconds) * 1000 + g.time.nanos / 1e6);
          // The p99 is over events, as before groups: each of the group's events counts.
          eventsByDelay.set(delay, (eventsByDelay.get(delay) ?? 0) + keyCount(g.keysJson));
        }
      }
      return;
    } catch (err) {
      if (controller.signal.aborted) return;
      if (!(err instanceof ResourceExhaustedError && cursor !== "")) throw err;
      resumed++;
    }
  }
});

process.on("message", async (/** @type {{ type: string }} */ m) => {
  if (m.type !== "stop") return;
  controller.abort();
  await Promise.all(streams);
  for (const c of connections) c.close();
  const used = process.cpuUsage(cpuAtReady);
  const delays = [...eventsByDelay].sort((a, b) => a[0] - b[0]);
  send({ type: "done", delays, resumed, cpuSeconds: (used.user + used.system) / 1e6 }, () => process.disconnect());
});
