/**
 * A Reserve whose caller has gone (the client left, or its deadline passed) leases nothing: its
 * answer would reach no one, and its jobs would sit reserved until their leases expired (a minute
 * by default). Against the store on each dialect (the caller already gone when the Reserve reads),
 * and end to end on the MySQL family, where a Reserve waits for a pooled connection while its
 * client gives up. A server that starts to stop meanwhile is not a caller gone: that Reserve still
 * leases, and its client, still connected, gets the leases.
 */
import test, { type ExecutionContext } from "ava";
import { parseDatabaseUrl } from "../server/dist/config.js";
import { attributesOf, encodeKey } from "../server/dist/key-codec.js";
import { jobsTable } from "../server/dist/store/mysql/table-ddl.js";
import { openStore } from "../server/dist/store/open-store.js";
import { parseTableName } from "../server/dist/table-name.js";
import type { JobStore, ReserveInput } from "../server/dist/store/store.js";
import { createTestDatabase, type Dialect, type TestDatabase, testDialects } from "./helpers/databases.js";
import { codeName, counts, keys, rpcError, sleep, until } from "./helpers/jobs-client.js";
import { serverWithLocker, untilLockWaits } from "./helpers/locking-database.js";
import { idKey, refreshInput } from "./helpers/store-inputs.js";
import { Code } from "@connectrpc/connect";

const WORKER = { workerId: "gone-test", host: "test-host", pid: 1, user: "tester", codeVersion: "v1" };

const databases: TestDatabase[] = [];
const stores: JobStore[] = [];
test.after.always(async () => {
  for (const s of stores) await s.close();
  for (const db of databases) await db.drop();
});

const leasesNothingOnceGone = test.macro({
  title: (_, dialect: Dialect) =>
    `${dialect}: a Reserve whose caller has gone leases nothing and records no request id; the same Reserve with its caller there leases`,
  async exec(t, dialect: Dialect) {
    const db = await createTestDatabase(dialect);
    databases.push(db);
    const store = await openStore(parseDatabaseUrl(db.url), { maxLostAttempts: 3, poolSize: 4, poolWaitMs: 5000, cacheMib: 8 });
    stores.push(store);
    const attributes = attributesOf(idKey(1), "test");
    const now = Date.now();
    await store.refresh(
      refreshInput(
        "gone",
        attributes,
        [1, 2, 3].map((id) => encodeKey(idKey(id), attributes, "ordered", "test")),
        "ordered",
        now,
      ),
    );
    const input: ReserveInput = {
      table: "gone",
      maxJobs: 2,
      maxPriority: null,
      restriction: [],
      worker: WORKER,
      leaseMs: 600_000,
      now: now + 1,
      requestId: "request-1",
    };

    for (const maxJobs of [2, 1000]) {
      // Small and large Reserves read differently on MySQL (reserve.ts); neither leases.
      t.deepEqual(await store.reserve({ ...input, maxJobs, callerGone: () => true }), [], `max ${maxJobs}: nothing leased`);
      t.like(await store.getProgress("gone"), { pending: 3, reserved: 0 }, `max ${maxJobs}: every job still pending`);
    }
    // Its request id was not recorded: the same id now leases anew, and a repeat answers those leases.
    const leased = await store.reserve({ ...input, callerGone: () => false });
    t.is(leased.length, 2);
    t.deepEqual(await store.reserve({ ...input, now: now + 2 }), leased, "a repeat of the id answers the same leases");
    t.like(await store.getProgress("gone"), { pending: 1, reserved: 2 });
  },
});

for (const dialect of testDialects()) test(leasesNothingOnceGone, dialect);

/** How many Reserve calls the server has finished, whatever their code. */
async function reservesFinished(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^populus_rpc_duration_seconds_count\{method="Reserve",code="[^"]*"\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

/**
 * A server on MariaDB with one pooled connection, which a Complete holds while it waits for a row
 * the test's own connection locks; answers the server, its client, the table and release(), which
 * lets the row go and resolves once the Complete committed.
 */
async function withTheOnlyConnectionHeld(t: ExecutionContext, table: string) {
  const { server, client, locker } = await serverWithLocker(t, ["--db-pool-size", "1", "--db-pool-wait", "20"]);
  await client.refresh({ table, keys: keys(0, 4) });
  const [lease] = (await client.reserve({ table, maxJobs: 1, worker: WORKER })).leases;
  t.truthy(lease);
  await locker.beginTransaction();
  await locker.query(`SELECT id FROM ${jobsTable(parseTableName(table).stored)} WHERE status = 'reserved' FOR UPDATE`);
  const held = client.complete({ table, completions: [{ leaseToken: lease!.leaseToken, result: { ok: true } }] });
  // Not a fixed sleep: on a loaded machine the Complete may take longer to reach the row, and a
  // Reserve sent before it would take the connection first.
  await untilLockWaits(t, locker, 1, "the Complete waits for the locked row, on the only pooled connection");
  const release = async () => {
    await locker.rollback();
    t.is(Number((await held).committed), 1);
  };
  return { server, client, release };
}

if (testDialects().includes("mysql")) {
  test("mysql: a Reserve whose client gives up while it waits for a pooled connection leases nothing once it gets one", async (t) => {
    const table = "CallerGone";
    const { server, client, release } = await withTheOnlyConnectionHeld(t, table);

    // A Reserve waits for the only connection; its client gives up a second later, time enough for
    // it to reach the server (one that never did would not be counted below, and the wait for it
    // would fail the test).
    const gaveUp = new AbortController();
    setTimeout(() => gaveUp.abort(), 1000);
    const error = await rpcError(client.reserve({ table, maxJobs: 2, worker: WORKER }, { signal: gaveUp.signal }));
    t.is(codeName(error.code), codeName(Code.Canceled));
    // The client's reset of that call must reach the server before the connection frees: the
    // client sends it after the abort, in a later turn of its event loop, and a fresh-clone run
    // let the row go first (the Reserve then found its caller still there and leased 2). A call on
    // the same HTTP/2 connection that the server answers without the database comes after the reset.
    const barrier = await rpcError(client.refresh({ table: "bad-name", keys: keys(0, 1) }));
    t.is(codeName(barrier.code), codeName(Code.InvalidArgument));

    // The connection frees; the Reserve, still waiting on the server, then runs for a caller that has gone.
    await release();
    await until("the server finished the abandoned Reserve", async () => (await reservesFinished(server.url)) >= 2);
    t.like(await counts(client, table), { pending: 3, reserved: 0, target: 1 }, "its jobs are still pending, not reserved for no one");
    t.is((await client.reserve({ table, maxJobs: 10, worker: WORKER })).leases.length, 3, "and the next Reserve takes them");
    t.is(await server.stop(), 0);
  });
}

if (testDialects().includes("mysql")) {
  test("mysql: a Reserve waiting for a pooled connection when the server starts to stop still leases, and its client gets the leases", async (t) => {
    const table = "StoppingServer";
    const { server, client, release } = await withTheOnlyConnectionHeld(t, table);
    const reserving = client.reserve({ table, maxJobs: 2, worker: WORKER });
    await sleep(1000); // the Reserve reaches the server and waits for the connection
    // SIGTERM: calls in flight finish (within --shutdown-grace), and their clients take the answer.
    const exited = server.stop();
    await until("the server is draining", async () => server.logs.some((line) => line.includes('"msg":"draining"')));
    await release();
    const { leases } = await reserving;
    t.is(leases.length, 2, "the leases, not an empty answer that a worker would take for an empty queue");
    t.is(await exited, 0);
  });
}
