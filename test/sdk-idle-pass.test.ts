/**
 * An idle pass costs one call: a Refresh's final answer says whether the table has a pending job
 * (RefreshResponse.any_pending), and populate does not Reserve when it has none. What the SDK
 * sends is read off a proxy in front of a real server (helpers/dropping-proxy.ts, dropping nothing).
 */
import test from "ava";
import { connect } from "../client-sdk/dist/index.js";
import { createTestDatabase, testDialects } from "./helpers/databases.js";
import { startDroppingProxy } from "./helpers/dropping-proxy.js";
import { startServer } from "./helpers/server-process.js";

const REFRESH = "/populus.v1.JobService/Refresh";
const RESERVE = "/populus.v1.JobService/Reserve";

for (const dialect of testDialects()) {
  test(`${dialect}: a populate of a table already done sends one Refresh and no Reserve; one with work pending still reserves it`, async (t) => {
    const database = await createTestDatabase(dialect);
    const server = await startServer({ database: database.url });
    const proxy = await startDroppingProxy(server.url, () => false);
    const db = connect({ url: proxy.url });
    t.teardown(async () => {
      db.close();
      await proxy.close();
      await server.kill();
      await database.drop();
    });
    const calls = (path: string) => proxy.bodies.get(path)?.length ?? 0;
    let keys = [{ id: 1 }, { id: 2 }];
    const Done = db.table<{ id: number }>("IdlePass", { keySource: () => keys, make: (key) => ({ twice: key.id * 2 }) });

    t.deepEqual(await Done.populate({ reserveJobs: true }), { successCount: 2, errorList: [] });
    const [refreshes, reserves] = [calls(REFRESH), calls(RESERVE)];
    t.true(reserves >= 1, "the first populate reserved");

    t.deepEqual(await Done.populate({ reserveJobs: true }), { successCount: 0, errorList: [] });
    t.is(calls(REFRESH), refreshes + 1, "one Refresh");
    t.is(calls(RESERVE), reserves, "no Reserve: the Refresh said nothing is pending");

    keys = [...keys, { id: 3 }];
    t.deepEqual(await Done.populate({ reserveJobs: true }), { successCount: 1, errorList: [] });
    t.true(calls(RESERVE) > reserves, "a new key is reserved and made");
    t.is((await Done.fetch()).length, 3);
  });
}
