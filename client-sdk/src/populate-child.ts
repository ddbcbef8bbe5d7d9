/**
 * The entry of a `populate({ processes })` child process (started with
 * child_process.fork). It waits for the parent's StartMessage, imports the
 * module that defined the table (which registers it), opens its own
 * connection, runs the reserve loop and reports a DoneMessage (or a
 * FatalMessage) before it exits. Its leases are renewed by the parent's
 * heartbeat thread (populate-heartbeat.ts). A StopMessage stops the loop with the
 * grace it names; SIGTERM/SIGINT reaching this process (Ctrl-C signals the
 * whole process group) stops it with populate's grace; the parent going away
 * (IPC disconnect) stops it at once. Either way held leases are released
 * without charging an attempt. This process is the SDK's own, so taking over
 * its signals hijacks nothing of the user's.
 *
 * @internal Not part of the public API.
 */
import type { StartMessage, ToChild, ToParent } from "./child-protocol.js";
import { JobsConfig } from "./config.js";
import { PopulusError } from "./errors.js";
import { GracefulStop } from "./graceful-stop.js";
import { RelayedLeaseKeeper } from "./populate-heartbeat.js";
import { unloadable } from "./populate.js";
import { countingMake } from "./populate-progress.js";
import { runReserveLoop } from "./reserve-loop.js";
import { openConnection } from "./rpc.js";
import type { Table } from "./table.js";
import { findTable, setChildImporting } from "./table-registry.js";
import { workerIdentity } from "./worker-identity.js";

const stop = new GracefulStop();
/** populate's grace, known once the StartMessage arrived; a signal before that stops at once. */
let graceS = 0;
/** The running loop's lease keeper, which hears of lost leases from the parent. */
let leaseKeeper: RelayedLeaseKeeper | undefined;

function send(message: ToParent): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

async function run(start: StartMessage): Promise<void> {
  setChildImporting(true);
  try {
    await import(start.moduleUrl);
  } catch (err) {
    throw unloadable(start.table, `${start.where} (importing it failed: ${(err as Error).message})`);
  } finally {
    setChildImporting(false);
  }
  const table = findTable<Table>(start.table, start.moduleUrl);
  if (table === undefined) {
    throw unloadable(start.table, `${start.where} (importing it did not define the table; is it defined inside a function or behind a condition?)`);
  }
  graceS = start.graceS;
  const settings = new JobsConfig(start.jobs);
  const connection = openConnection(start.connect);
  try {
    const result = await runReserveLoop({
      rpc: connection.rpc,
      heartbeat: (listener) => (leaseKeeper = new RelayedLeaseKeeper((m) => void send(m), listener)),
      table: start.table,
      make: start.reportMakes === true ? countingMake(table.definition.make, (outcome) => void send({ type: "make", outcome })) : table.definition.make,
      identity: workerIdentity(settings.versionMethod),
      maxCalls: start.maxCalls,
      priority: start.priority,
      restriction: start.restriction,
      suppressErrors: start.suppressErrors,
      keepCompleted: settings.keepCompleted,
      leaseDurationS: start.leaseDurationS,
      signal: stop.stopSignal,
      cancel: stop.cancelSignal,
      onFailure: (f) => void send({ type: "failure", key: f.key, message: f.message }),
    });
    await send({ type: "done", successCount: result.successCount, errorList: result.errorList });
  } finally {
    connection.close();
  }
}

process.on("message", (m: ToChild) => {
  if (m.type === "stop") stop.request(m.graceS);
  else if (m.type === "lost") leaseKeeper?.deliver(m);
  else if (m.type === "start") {
    run(m)
      .catch((err: unknown) =>
        send({ type: "fatal", name: err instanceof PopulusError ? err.name : "Error", message: err instanceof Error ? err.message : String(err) }),
      )
      // The report is flushed (send's callback), so exit now: handles the
      // pipeline module or the HTTP/2 session left behind kept a finished
      // child alive for about 2 s (measured with the example pipeline).
      .finally(() => process.exit(0));
  }
});
process.on("disconnect", () => stop.request(0));
process.on("SIGTERM", () => stop.request(graceS));
process.on("SIGINT", () => stop.request(graceS));
