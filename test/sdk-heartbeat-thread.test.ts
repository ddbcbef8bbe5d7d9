/**
 * One heartbeat thread serves every reserve loop of a process (heartbeat-thread.ts): leases of
 * two tables, held by two loops, are both renewed by it; a lease the server answers as lost goes
 * to the loop that holds it and to no other; and a loop's leases are renewed no more once it has
 * stopped, even one it failed to let go. Real server, real thread, 1 s leases.
 */
import test from "ava";
import { resolveConnectOptions } from "../client-sdk/dist/config.js";
import { startHeartbeatThread } from "../client-sdk/dist/heartbeat-thread.js";
import { createTestDatabase, testDialects } from "./helpers/databases.js";
import { jobsClient, keys, seconds } from "./helpers/jobs-client.js";
import { startServer } from "./helpers/server-process.js";

const WORKER = { workerId: "heartbeat-thread-test" };

for (const dialect of testDialects()) {
  test(`${dialect}: one heartbeat thread renews the leases of two loops on two tables, routes a lost lease to its holder only, and renews nothing of a stopped loop`, async (t) => {
    const database = await createTestDatabase(dialect);
    const server = await startServer({ database: database.url });
    t.teardown(async () => {
      await server.kill();
      await database.drop();
    });
    const client = jobsClient(server.url);
    await client.refresh({ table: "RenewA", keys: keys(0, 2) });
    await client.refresh({ table: "RenewB", keys: keys(0, 1) });
    const leaseA = (await client.reserve({ table: "RenewA", maxJobs: 2, worker: WORKER, leaseDuration: seconds(1) })).leases.map((l) => l.leaseToken);
    const leaseB = (await client.reserve({ table: "RenewB", maxJobs: 1, worker: WORKER, leaseDuration: seconds(1) })).leases.map((l) => l.leaseToken);
    t.is(leaseA.length, 2);
    t.is(leaseB.length, 1);

    const lost = { a: [] as string[], b: [] as string[] };
    const errors: Error[] = [];
    const connect = resolveConnectOptions({ url: server.url });
    const keeperA = startHeartbeatThread(
      { connect, table: "RenewA", leaseDurationS: 1 },
      { onLost: (ts) => lost.a.push(...ts), onError: (e) => errors.push(e) },
    );
    const keeperB = startHeartbeatThread(
      { connect, table: "RenewB", leaseDurationS: 1 },
      { onLost: (ts) => lost.b.push(...ts), onError: (e) => errors.push(e) },
    );
    t.is(keeperA.ready, keeperB.ready, "both loops are served by the same thread");
    await keeperA.ready;
    keeperA.hold(leaseA);
    keeperB.hold(leaseB);

    // Three lease lengths: unrenewed, the lease sweep (every second) would have put all three back to pending.
    await new Promise((r) => setTimeout(r, 3000));
    const rival = await client.reserve({ table: "RenewA", maxJobs: 2, worker: { workerId: "rival" }, leaseDuration: seconds(1) });
    t.deepEqual(rival.leases, [], "table A's leases were renewed, so nothing came back to pending");
    t.deepEqual((await client.getProgress({ table: "RenewB" })).progress?.reserved, 1n, "table B's lease was renewed too");

    // The server lets one of A's leases go; the thread hears it at its next renewal.
    await client.release({ table: "RenewA", leaseTokens: [leaseA[0]!] });
    const deadline = Date.now() + 5000;
    while (lost.a.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    t.deepEqual(lost.a, [leaseA[0]], "the lost lease went to the loop holding it");
    t.deepEqual(lost.b, [], "and not to the other loop");

    const done = await client.complete({ table: "RenewA", completions: [{ leaseToken: leaseA[1]!, result: {} }] });
    t.is(done.committed, 1n);
    await keeperA.stop();

    // A loop that stops with a lease still held (it should have released it) leaves it to expire:
    // the thread renews nothing of a stopped keeper.
    await keeperB.stop();
    await new Promise((r) => setTimeout(r, 3000));
    const progressB = (await client.getProgress({ table: "RenewB" })).progress;
    t.is(progressB?.reserved, 0n, "the stopped loop's lease was no longer renewed, so it expired");
    t.is(progressB?.pending, 1n);
    t.deepEqual(errors, []);
  });
}
