/**
 * Overload (issue 15, item 4, MySQL family): every pooled database connection held. The server
 * runs with --db-pool-size 2 --db-pool-wait 1; the test locks two jobs' rows from its own
 * connection, and two Completes of those jobs then wait for the lock, each holding one pooled
 * connection. Meanwhile:
 *
 * - a call waits the bounded second for a connection, then is answered UNAVAILABLE with retry advice;
 * - of 150 calls at once, at most 100 (the wait queue's bound, 50 per connection) wait; the rest
 *   are answered UNAVAILABLE at once: nothing queues in memory without bound;
 * - health stays SERVING (the database answers; the pool is busy);
 * - once the lock goes, the held Completes commit and every call is served again.
 */
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import test from "ava";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../client-sdk/dist/gen/grpc/health/v1/health_pb.js";
import { createTestDatabase, testDialects } from "./helpers/databases.js";
import { codeName, counts, jobsClient, keys, rpcError } from "./helpers/jobs-client.js";
import { serverWithLocker, untilLockWaits } from "./helpers/locking-database.js";
import { startServer } from "./helpers/server-process.js";

const WORKER = { workerId: "pool-test", host: "test-host", pid: 1, user: "tester", codeVersion: "v1" };

if (testDialects().includes("mysql")) {
  test("mysql: with every pooled connection held, calls wait at most --db-pool-wait, at most 50 per connection wait at all, and all are answered UNAVAILABLE; then served again", async (t) => {
    const { server, client, locker } = await serverWithLocker(t, ["--db-pool-size", "2", "--db-pool-wait", "1"]);
    const table = "PoolHeld";
    await client.refresh({ table, keys: keys(0, 3) });
    const { leases } = await client.reserve({ table, maxJobs: 2, worker: WORKER });
    t.is(leases.length, 2);

    // Lock the two leased jobs' rows; each Complete then holds a pooled connection while it waits for its row.
    await locker.query("SET SESSION innodb_lock_wait_timeout = 60");
    await locker.beginTransaction();
    await locker.query("SELECT id FROM `~~pool_held` WHERE status = 'reserved' FOR UPDATE");
    const held = leases.map((l) => client.complete({ table, completions: [{ leaseToken: l.leaseToken, result: { ok: true } }] }));
    // Not a fixed sleep: on a loaded machine the Completes may take longer to reach their rows.
    await untilLockWaits(t, locker, 2, "both Completes wait for their locked rows, each on a pooled connection");

    const started = Date.now();
    const waited = await rpcError(client.getProgress({ table }));
    const elapsed = Date.now() - started;
    t.is(codeName(waited.code), codeName(Code.Unavailable));
    t.is(waited.rawMessage, "all 2 database connections stayed busy for 1 s; retry shortly");
    t.true(elapsed >= 900, `answered after ${elapsed} ms: it waited for a connection first`);
    t.log(`a call with every connection held was answered UNAVAILABLE after ${elapsed} ms`);

    const health = createClient(Health, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
    t.is((await health.check({ service: "populus.v1.JobService" })).status, Serving.SERVING, "busy is not down: health stays SERVING");

    const callers = Array.from({ length: 3 }, () => jobsClient(server.url));
    const burst = await Promise.all(Array.from({ length: 150 }, (_, i) => rpcError(callers[i % 3]!.getProgress({ table }))));
    t.deepEqual([...new Set(burst.map((e) => codeName(e.code)))], [codeName(Code.Unavailable)], "every call of the burst is UNAVAILABLE");
    const queueFull = burst.filter((e) => e.rawMessage === "all 2 database connections are busy and 100 calls already wait for one; retry shortly").length;
    const timedOut = burst.filter((e) => e.rawMessage === "all 2 database connections stayed busy for 1 s; retry shortly").length;
    t.is(queueFull + timedOut, 150, "each answered with one of the two messages");
    t.true(timedOut <= 100, `${timedOut} waited: no more than the queue's bound`);
    t.true(queueFull >= 50, `${queueFull} answered at once, without waiting`);
    t.log(`burst of 150: ${timedOut} waited 1 s, ${queueFull} answered at once`);

    await locker.rollback();
    const committed = await Promise.all(held);
    t.deepEqual(
      committed.map((c) => c.committed),
      [1n, 1n],
      "the held Completes commit once the lock goes",
    );
    t.like(await counts(client, table), { pending: 1, reserved: 0, target: 2 });
    t.is(await server.stop(), 0);
  });
}

if (testDialects().includes("mysql")) {
  test("mysql: more tables declared at once than the pool has connections: each declaration works on the one connection that holds its lock, so all are served, none waits out the pool", async (t) => {
    const database = await createTestDatabase("mysql");
    const server = await startServer({ database: database.url, args: ["--db-pool-size", "2", "--db-pool-wait", "5"] });
    t.teardown(async () => {
      await server.kill();
      await database.drop();
    });
    const client = jobsClient(server.url);
    const tables = Array.from({ length: 8 }, (_, i) => `Declared${i}`);
    const started = Date.now();
    // Before, each took a connection for its named lock and then waited for a second one: with 2
    // connections, two declarations held both and every call waited 5 s, then failed UNAVAILABLE.
    const answers = await Promise.all(tables.map((table) => client.refresh({ table, keys: keys(0, 3) })));
    const elapsed = Date.now() - started;
    t.deepEqual(
      answers.map((a) => Number(a.added)),
      tables.map(() => 3),
    );
    for (const table of tables) t.like(await counts(client, table), { pending: 3 });
    t.log(`8 tables declared at once on 2 pooled connections in ${elapsed} ms`);
  });
}

if (testDialects().includes("mysql")) {
  test("mysql: a server with one pooled connection migrates a new database at start-up and serves a table's whole cycle", async (t) => {
    const database = await createTestDatabase("mysql");
    // Before, the migration took a second connection while the first held the migration lock: a
    // pool of one waited out --db-pool-wait and the server did not start.
    const server = await startServer({ database: database.url, args: ["--db-pool-size", "1", "--db-pool-wait", "5"] });
    t.teardown(async () => {
      await server.kill();
      await database.drop();
    });
    const client = jobsClient(server.url);
    const table = "OneConnection";
    t.is(Number((await client.refresh({ table, keys: keys(0, 3) })).added), 3);
    const { leases } = await client.reserve({ table, maxJobs: 3, worker: WORKER });
    t.is(leases.length, 3);
    const done = await client.complete({ table, completions: leases.map((l) => ({ leaseToken: l.leaseToken, result: { ok: true } })) });
    t.is(Number(done.committed), 3);
    t.like(await counts(client, table), { pending: 0, reserved: 0, target: 3 });
    t.is(await server.stop(), 0);
  });
}
