/**
 * The operator's view: plain HTTP/1.1 POSTs with JSON bodies (the Connect
 * protocol), exactly what `curl -H 'content-type: application/json' -d ...`
 * sends. No SDK, no generated code: the JSON below is the documented wire form
 * (int64 as decimal strings, enums by name, fields in lowerCamelCase).
 */
import test from "ava";
import { sqliteServerPerFile } from "./helpers/sqlite-server.js";

const server = sqliteServerPerFile(test);

/** POSTs JSON to a JobService RPC and answers the status, content type and parsed body. */
async function post(rpc: string, body: unknown): Promise<{ status: number; contentType: string | null; json: unknown }> {
  const res = await fetch(`${server().url}/populus.v1.JobService/${rpc}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, contentType: res.headers.get("content-type"), json: JSON.parse(text) as unknown };
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

function subject(id: string, session: string) {
  return { attributes: { subject_id: { intValue: id }, session: { stringValue: session } } };
}

test.serial("Refresh, then GetProgress, then ListJobs, as JSON over HTTP/1.1", async (t) => {
  const refreshed = await post("Refresh", { table: "ProcessedData", keys: [subject("1", "a"), subject("2", "b")] });
  t.deepEqual(refreshed, { status: 200, contentType: "application/json", json: { added: "2", anyPending: true } });

  // A more urgent key, refreshed later: ListJobs answers in reservation order (priority first).
  const urgent = await post("Refresh", { table: "ProcessedData", keys: [subject("3", "c")], priority: 1 });
  t.deepEqual(urgent.json, { added: "1", anyPending: true });

  const progress = await post("GetProgress", { table: "ProcessedData" });
  t.is(progress.status, 200);
  // Zero counts are omitted, as proto3 JSON does.
  t.deepEqual(progress.json, { progress: { table: "processed_data", pending: "3", remaining: "3" } });

  const listed = await post("ListJobs", { table: "ProcessedData" });
  t.is(listed.status, 200);
  const { jobs, ...rest } = listed.json as { jobs: Array<Record<string, unknown>> };
  t.deepEqual(rest, {}, "one page: no nextPageToken");
  t.is(jobs.length, 3);
  for (const job of jobs) {
    t.regex(job.createTime as string, ISO);
    t.regex(job.scheduledTime as string, ISO);
    t.true(Math.abs(Date.parse(job.createTime as string) - Date.now()) < 60_000, "createTime is about now");
    delete job.createTime;
    delete job.scheduledTime;
  }
  // Compared by key here; the order of the answer is pinned by the next test.
  const bySubject = (job: Record<string, unknown>) => JSON.stringify(job.key);
  t.deepEqual(
    jobs.sort((a, b) => (bySubject(a) < bySubject(b) ? -1 : 1)),
    [
      { key: subject("1", "a"), status: "JOB_STATUS_PENDING", priority: 5 },
      { key: subject("2", "b"), status: "JOB_STATUS_PENDING", priority: 5 },
      { key: subject("3", "c"), status: "JOB_STATUS_PENDING", priority: 1 },
    ],
  );

  const filtered = await post("ListJobs", { table: "ProcessedData", restriction: { session: { stringValue: "b" } } });
  t.is((filtered.json as { jobs: unknown[] }).jobs.length, 1, "a restriction filters by key attribute");
});

// job_service.proto: ListJobs answers in reservation order (priority, scheduled_time, id).
test.serial("ListJobs answers in reservation order: priority, then scheduled time, then id", async (t) => {
  const listed = await post("ListJobs", { table: "ProcessedData" });
  const { jobs } = listed.json as { jobs: Array<{ key: unknown; priority: number }> };
  t.deepEqual(
    jobs.map((j) => [j.key, j.priority]),
    [
      [subject("3", "c"), 1],
      [subject("1", "a"), 5],
      [subject("2", "b"), 5],
    ],
  );
});

test.serial("a bad request answers HTTP 400 invalid_argument with the message, and changes nothing", async (t) => {
  const badName = await post("Refresh", { table: "bad-name", keys: [subject("1", "a")] });
  t.deepEqual(badName, {
    status: 400,
    contentType: "application/json",
    json: {
      code: "invalid_argument",
      message: 'table "bad-name" is not a valid name; use letters, digits and underscores, starting with a letter, at most 64 characters',
    },
  });

  // subject_id was fixed as int64 at the table's first refresh; the second key sends it as a string.
  const badKey = await post("Refresh", {
    table: "ProcessedData",
    keys: [subject("9", "z"), { attributes: { subject_id: { stringValue: "10" }, session: { stringValue: "y" } } }],
  });
  t.is(badKey.status, 400);
  t.deepEqual(badKey.json, {
    code: "invalid_argument",
    message: "Refresh key #2: key { session: string, subject_id: string } does not match the table's key attributes { session: string, subject_id: int64 }",
  });

  const badPriority = await post("Refresh", { table: "ProcessedData", keys: [subject("9", "z")], priority: 256 });
  t.deepEqual(badPriority.json, { code: "invalid_argument", message: "priority must be from 0 to 255 (lower is more urgent), got 256" });

  const progress = await post("GetProgress", { table: "ProcessedData" });
  t.deepEqual(progress.json, { progress: { table: "processed_data", pending: "3", remaining: "3" } }, "no key of the rejected calls was added");
});

test.serial("an unknown table answers HTTP 404 not_found", async (t) => {
  const res = await post("GetProgress", { table: "NeverRefreshed" });
  t.deepEqual(res, {
    status: 404,
    contentType: "application/json",
    json: { code: "not_found", message: 'table "NeverRefreshed" does not exist; a refresh declares a table and fixes its key attributes' },
  });
  const jobs = await post("ListJobs", { table: "NeverRefreshed" });
  t.is(jobs.status, 404);
  t.is((jobs.json as { code: string }).code, "not_found");
});

test.serial("ListTables answers the declared table with its key attributes", async (t) => {
  const res = await post("ListTables", {});
  t.is(res.status, 200);
  const { tables } = res.json as { tables: Array<Record<string, unknown>> };
  t.is(tables.length, 1);
  const [table] = tables;
  t.regex(table?.createTime as string, ISO);
  delete table?.createTime;
  t.deepEqual(table, {
    name: "processed_data",
    displayName: "ProcessedData",
    keyAttributes: [
      { name: "session", type: "ATTRIBUTE_TYPE_STRING" },
      { name: "subject_id", type: "ATTRIBUTE_TYPE_INT64" },
    ],
    progress: { table: "processed_data", pending: "3", remaining: "3" },
  });
});
