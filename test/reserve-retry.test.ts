/**
 * A Reserve whose answer is lost has one effect (issue 15, item 2): between the SDK and a real
 * server sits a proxy (helpers/dropping-proxy.ts) that passes the first Reserve on, lets the
 * server commit its leases, and then drops the connection instead of answering. The SDK retries
 * with the same request id and gets those same jobs, so populate makes every key once and leaves
 * nothing reserved. Without the id, the first batch would sit reserved by nobody for the 60 s
 * lease, and populate would end with those keys not made.
 */
import { fromBinary } from "@bufbuild/protobuf";
import test from "ava";
import { connect } from "../client-sdk/dist/index.js";
import { ReserveRequestSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { createTestDatabase, testDialects } from "./helpers/databases.js";
import { startDroppingProxy } from "./helpers/dropping-proxy.js";
import { startServer } from "./helpers/server-process.js";

const RESERVE = "/populus.v1.JobService/Reserve";
const KEYS = 40;

for (const dialect of testDialects()) {
  test(`${dialect}: the first Reserve's answer is lost after the server committed; the SDK's retry gets those jobs and populate makes every key once, leaving none reserved`, async (t) => {
    const database = await createTestDatabase(dialect);
    const server = await startServer({ database: database.url });
    const proxy = await startDroppingProxy(server.url, (path, nth) => path === RESERVE && nth === 1);
    t.teardown(async () => {
      await proxy.close();
      await server.kill();
      await database.drop();
    });

    const db = connect({ url: proxy.url });
    t.teardown(() => db.close());
    const made: number[] = [];
    const LostAnswer = db.table<{ id: number }>("LostAnswer", {
      keySource: Array.from({ length: KEYS }, (_, id) => ({ id })),
      make: async (key) => {
        made.push(key.id);
        return { double: key.id * 2 };
      },
    });

    t.deepEqual(await LostAnswer.populate({ reserveJobs: true }), { successCount: KEYS, errorList: [] });
    t.is(proxy.dropped, 1, "one Reserve answer was dropped");
    const reserves = (proxy.bodies.get(RESERVE) ?? []).map((body) => fromBinary(ReserveRequestSchema, body));
    t.true(reserves.length >= 2, "the lost Reserve was sent again");
    t.regex(reserves[0]?.requestId ?? "", /^[0-9a-f-]{36}$/, "the SDK names each Reserve");
    t.is(reserves[1]?.requestId, reserves[0]?.requestId, "the retry carries the same request id");
    t.is(new Set(reserves.map((r) => r.requestId)).size, reserves.length - 1, "every other Reserve has an id of its own");

    t.deepEqual(
      [...made].sort((a, b) => a - b),
      Array.from({ length: KEYS }, (_, id) => id),
      "every key made once",
    );
    const progress = await LostAnswer.jobs.progress();
    t.like(progress, { pending: 0, reserved: 0, error: 0, remaining: 0 });
    t.is((await LostAnswer.fetch()).length, KEYS);
  });
}
