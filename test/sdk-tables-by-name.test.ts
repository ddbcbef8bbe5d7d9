/**
 * The SDK for tools without a pipeline module (what the populus CLI uses):
 * `db.listTables()`, `db.jobs(name)` for a table known only by name, and
 * `fetch({ limit })` / `jobs.fetch({ statuses })`, against a real server.
 * The limit is checked across ListJobs' pages of 1,000.
 */
import test from "ava";
import { connect, InvalidArgumentError, TableNotFoundError } from "../client-sdk/dist/index.js";
import { sqliteServerPerFile } from "./helpers/sqlite-server.js";

const server = sqliteServerPerFile(test);

const ids = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => ({ id: from + i }));

test("listTables answers each table's key attributes and counts; db.jobs(name) reads and limits its jobs across pages", async (t) => {
  const db = connect({ url: server().url });
  t.teardown(() => db.close());
  const Many = db.table<{ id: number }>("ManyJobs", { keySource: ids(0, 2500), make: () => ({}), module: import.meta.url });
  await Many.jobs.refresh({ priority: 7 });
  await Many.jobs.ignore([{ id: 0 }, { id: 1 }]);

  const tables = await db.listTables();
  const many = tables.find((x) => x.displayName === "ManyJobs");
  t.like(many, { name: "many_jobs", keyAttributes: [{ name: "id", type: "int64" }], progress: { pending: 2498, ignore: 2, remaining: 2498 } });
  t.true(many?.createTime instanceof Date);

  // By stored name and by display name: the same jobs.
  const byName = db.jobs<{ id: number }>("many_jobs");
  const limited = await byName.fetch({ limit: 1500 });
  t.is(limited.length, 1500);
  t.deepEqual(
    limited.slice(0, 3).map((j) => [j.key.id, j.status, j.priority]),
    [
      [0, "ignore", 7],
      [1, "ignore", 7],
      [2, "pending", 7],
    ],
    "every status, in reservation order (priority, scheduled time, id)",
  );
  t.is((await db.jobs("ManyJobs").pending.fetch({ limit: 3 })).length, 3);
  t.deepEqual(
    (await byName.fetch({ statuses: ["ignore"] })).map((j) => j.key.id),
    [0, 1],
  );
  t.is((await byName.fetch({ statuses: ["ignore", "pending"] })).length, 2500);
  t.is((await byName.fetch({ statuses: ["error"] })).length, 0);
  t.is((await byName.fetch({ restriction: { id: 2400 } }))[0]?.key.id, 2400);

  await t.throwsAsync(byName.refresh(), {
    instanceOf: InvalidArgumentError,
    message: "jobs.refresh: many_jobs was opened by name (db.jobs()), without its key source; refresh the table defined with db.table()",
  });
  await t.throwsAsync(byName.fetch({ limit: 0 }), { instanceOf: InvalidArgumentError, message: "fetch: limit must be a whole number of 1 or more, got 0" });
  await t.throwsAsync(byName.fetch({ statuses: ["done" as "error"] }), {
    instanceOf: InvalidArgumentError,
    message: 'fetch: unknown status "done"; use pending, reserved, success, error, ignore',
  });
  t.throws(() => db.jobs("no such"), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(db.jobs("NeverRefreshed").progress(), { instanceOf: TableNotFoundError });
});
