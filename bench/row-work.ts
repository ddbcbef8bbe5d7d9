/**
 * An experiment, not a scenario of `npm run bench`: what InnoDB's row work costs per drained job,
 * with the jobs table as the server makes it and with a proposed "lease row" shape, the drain's own
 * statements sent by mysql2 alone (no Populus process in the way), by one connection or several at once.
 *
 *   node --import tsx bench/row-work.ts [jobs=20000] [repetitions=3] [connections=1]
 *
 * Why: on two cores MariaDB takes most of a drained job's CPU (scenario 1 prints its share), and
 * most of that is Reserve's UPDATE. It changes columns whose size changes (NULL to a lease token,
 * a worker id, times; 'pending' to 'reserved'), so InnoDB cannot update the row in place: it writes
 * a new version of the whole record and logs it. In the lease-row shape a reservation changes only
 * fixed-size columns of the job (status CHAR(8), a lease id, attempts) and writes the holder and
 * the times once per batch, in a row of its own; that UPDATE is done in place.
 *
 * Printed per shape and repetition: jobs/s, MariaDB's CPU per job (/proc) and the redo log InnoDB
 * wrote per job (Innodb_os_log_written), split between Reserves and Completes with one connection.
 * Global counters: run it alone on the database server.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import mysql from "mysql2/promise";
import { createTableStatements, jobsTable, targetTable } from "../server/dist/store/mysql/table-ddl.js";
import { createTestDatabase } from "../test/helpers/databases.js";
import { startServer } from "../test/helpers/server-process.js";

const JOBS = Number(process.argv[2] ?? 20_000);
const REPETITIONS = Number(process.argv[3] ?? 3);
/** Connections draining at once, as worker processes do (Reserves and Completes of different batches then overlap). */
const WORKERS = Number(process.argv[4] ?? 1);
/** The SDK's largest batch. */
const BATCH = 1000;
const EVENTS = "`~populus_events`";
const REQUESTS = "`~populus_reserve_requests`";
const LEASES = "`~bench_leases`";
const WORKER = { id: "bench:1:0123abcd", host: "bench", pid: 1, user: "bench" };

type Shape = "as the server makes it" | "lease row";

/** The jobs table and target of `table` in `shape`, and for the lease-row shape its leases table. */
function ddl(shape: Shape, table: string): string[] {
  const [jobs, target] = createTableStatements(table) as [string, string];
  if (shape === "as the server makes it") return [jobs, target];
  const leaseJobs = jobs
    .replace("status VARCHAR(8) CHARACTER SET ascii NOT NULL", "status CHAR(8) CHARACTER SET ascii NOT NULL")
    .replace("lease_token VARCHAR(64) CHARACTER SET ascii NULL,", "lease_id BIGINT NOT NULL DEFAULT 0,");
  if (!leaseJobs.includes("status CHAR(8)") || !leaseJobs.includes("lease_id BIGINT"))
    throw new Error("row-work: the jobs table's DDL changed; update the lease-row shape");
  return [
    leaseJobs,
    target,
    `CREATE TABLE IF NOT EXISTS ${LEASES} (
       id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, table_name VARCHAR(64) CHARACTER SET ascii NOT NULL,
       prefix CHAR(32) CHARACTER SET ascii NOT NULL, worker_id VARCHAR(255) NULL, host VARCHAR(255) NULL,
       pid INT UNSIGNED NULL, user VARCHAR(255) NULL, code_version VARCHAR(255) NULL,
       reserve_time BIGINT NOT NULL, lease_expire_time BIGINT NOT NULL, KEY prefix_idx (prefix, table_name), KEY expire_idx (lease_expire_time)
     ) ENGINE=InnoDB`,
  ];
}

const quote = (text: string) => `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;

function mariadbdCpuSeconds(): number {
  const pid = execFileSync("pgrep", ["-x", "mariadbd"], { encoding: "utf8" }).trim().split("\n")[0];
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function redoBytes(c: mysql.Connection): Promise<number> {
  const [rows] = await c.query("SHOW GLOBAL STATUS LIKE 'Innodb_os_log_written'");
  return Number((rows as { Value: string }[])[0]!.Value);
}

/** Redo bytes written by Reserves and by Completes, counted only while one connection drains (with more, theirs interleave). */
interface RedoSplit {
  reserve: number;
  complete: number;
}

/** One Reserve of up to BATCH jobs, as the server sends it (its locking read, then the lease in one round trip): the jobs it leased. */
async function reserve(c: mysql.Connection, shape: Shape, table: string, now: number, prefix: string): Promise<{ id: string; key_json: string }[]> {
  const jobs = jobsTable(table);
  const [[, ready]] = (await c.query(
    `START TRANSACTION; SELECT id, key_json FROM ${jobs} FORCE INDEX (ready_idx) WHERE status = 'pending' AND scheduled_time <= ${now}
     ORDER BY priority, scheduled_time, id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED`,
  )) as unknown as [[unknown, { id: string; key_json: string }[]]];
  if (ready.length === 0) {
    await c.query("COMMIT");
    return ready;
  }
  const ids = ready.map((r) => r.id).join(",");
  const keys = quote(JSON.stringify([{ s: "reserved", w: WORKER.id, c: 0, k: ready.map((r) => JSON.parse(r.key_json)) }]));
  const reservation =
    shape === "lease row"
      ? `INSERT INTO ${LEASES} (table_name, prefix, worker_id, host, pid, user, code_version, reserve_time, lease_expire_time)
           VALUES ('${table}', '${prefix}', '${WORKER.id}', '${WORKER.host}', ${WORKER.pid}, '${WORKER.user}', '', ${now}, ${now + 60_000});
         UPDATE ${jobs} FORCE INDEX (PRIMARY) SET status = 'reserved', lease_id = LAST_INSERT_ID(), attempts = attempts + 1 WHERE id IN (${ids})`
      : `UPDATE ${jobs} FORCE INDEX (PRIMARY) SET status = 'reserved', lease_token = CONCAT('${prefix}', '-', LOWER(CONV(id, 10, 36))),
           reserve_time = ${now}, lease_expire_time = ${now + 60_000}, attempts = attempts + 1, worker_id = '${WORKER.id}', host = '${WORKER.host}',
           pid = ${WORKER.pid}, user = '${WORKER.user}', code_version = '', progress = NULL, progress_message = NULL WHERE id IN (${ids})`;
  await c.query(
    `${reservation};
     INSERT INTO ${EVENTS} (table_name, time, deltas, events) VALUES ('${table}', ${now}, '{"pending":-${ready.length},"reserved":${ready.length}}', ${keys});
     INSERT INTO ${REQUESTS} (table_name, request_id, lease_prefix, job_ids, lease_expire_time) VALUES ('${table}', '${prefix}', '${prefix}', '${ids}', ${now + 60_000});
     COMMIT`,
  );
  return ready;
}

/**
 * Reserves of one table take turns, as the server's do (its TurnsPerKey): each one's SKIP LOCKED
 * scan would otherwise step over the rows the others had just locked.
 */
class ReserveTurns {
  #last: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const mine = this.#last.then(task, task);
    this.#last = mine.catch(() => undefined);
    return mine;
  }
}

/** One worker's loop: Reserve a batch, Complete it, until no job is left; `worker` tells its leases apart. */
async function workerLoop(
  c: mysql.Connection,
  shape: Shape,
  table: string,
  now: number,
  worker: number,
  turns: ReserveTurns,
  split: RedoSplit | undefined,
): Promise<void> {
  const [jobs, target] = [jobsTable(table), targetTable(table)];
  const leaseRow = shape === "lease row";
  for (let batch = 0; ; batch++) {
    const redo0 = split === undefined ? 0 : await redoBytes(c);
    const prefix = `${worker.toString(16).padStart(2, "0")}${batch.toString(16).padStart(6, "0")}${"c".repeat(24)}`;
    const ready = await turns.run(() => reserve(c, shape, table, now, prefix));
    if (ready.length === 0) return;
    const ids = ready.map((r) => r.id).join(",");
    const keys = quote(JSON.stringify([{ s: "deleted", w: WORKER.id, c: 1, k: ready.map((r) => JSON.parse(r.key_json)) }]));
    const redo1 = split === undefined ? 0 : await redoBytes(c);
    const fence = leaseRow
      ? `lease_id = (SELECT id FROM ${LEASES} WHERE prefix = '${prefix}' AND table_name = '${table}')`
      : `lease_token IN (${ready.map((r) => `'${prefix}-${Number(r.id).toString(36)}'`).join(",")})`;
    const [[, held]] = (await c.query(
      `START TRANSACTION; DELETE FROM ${jobs} WHERE status = 'reserved' AND id IN (${ids}) AND ${fence} ORDER BY id LIMIT ${ready.length}
       RETURNING id, key_hash, key_json`,
    )) as unknown as [[unknown, { id: string; key_hash: string; key_json: string }[]]];
    const results = held.map((r) => `('${r.key_hash}', ${quote(r.key_json)}, '{}', '${prefix}-${Number(r.id).toString(36)}', ${now})`);
    await c.query(
      `INSERT INTO ${target} (key_hash, key_json, result_json, lease_token, complete_time) VALUES ${results.join(",")} ON DUPLICATE KEY UPDATE key_hash = key_hash;
       INSERT INTO ${EVENTS} (table_name, time, deltas, events) VALUES ('${table}', ${now}, '{"reserved":-${held.length},"target":${held.length}}', ${keys});
       COMMIT`,
    );
    if (split !== undefined) {
      split.reserve += redo1 - redo0;
      split.complete += (await redoBytes(c)) - redo1;
    }
  }
}

/** One drain of JOBS jobs in `shape` by WORKERS connections at once, each reserving and completing batches of BATCH as the server sends them. */
async function drainOnce(connections: mysql.Connection[], shape: Shape, table: string): Promise<string> {
  const [c] = connections as [mysql.Connection];
  for (const statement of ddl(shape, table)) await c.query(statement);
  const now = Date.now();
  for (let from = 0; from < JOBS; from += BATCH) {
    const rows = [];
    for (let k = from; k < Math.min(JOBS, from + BATCH); k++)
      rows.push(`('${k.toString(36).padStart(32, "0")}', '{"k":"${k}"}', 'pending', 5, ${now}, ${now}, 0)`);
    await c.query(`INSERT INTO ${jobsTable(table)} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts) VALUES ${rows.join(",")}`);
  }
  const split = connections.length === 1 ? { reserve: 0, complete: 0 } : undefined;
  const [cpu0, redo0, started] = [mariadbdCpuSeconds(), await redoBytes(c), performance.now()];
  const turns = new ReserveTurns();
  await Promise.all(connections.map((connection, worker) => workerLoop(connection, shape, table, now, worker, turns, split)));
  const seconds = (performance.now() - started) / 1000;
  const cpuUs = ((mariadbdCpuSeconds() - cpu0) * 1e6) / JOBS;
  const redo = ((await redoBytes(c)) - redo0) / JOBS;
  const [[{ n }]] = (await c.query(`SELECT COUNT(*) AS n FROM ${targetTable(table)}`)) as unknown as [[{ n: number }]];
  if (Number(n) !== JOBS) throw new Error(`row-work: ${n} results for ${JOBS} jobs`);
  const redoText =
    split === undefined ? `${redo.toFixed(0)} B` : `${(split.reserve / JOBS).toFixed(0)} B in Reserve, ${(split.complete / JOBS).toFixed(0)} in Complete`;
  return `${(JOBS / seconds).toFixed(0)} jobs/s; MariaDB ${cpuUs.toFixed(1)} µs a job; redo a job: ${redoText}`;
}

const database = await createTestDatabase("mysql");
try {
  // The server's own change log and reserve-request tables, made by its migrations.
  await (await startServer({ database: database.url })).stop();
  const connections = await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      const c = await mysql.createConnection({ uri: database.url, multipleStatements: true });
      await c.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
      return c;
    }),
  );
  try {
    for (let i = 0; i < REPETITIONS; i++) {
      // Alternated, so that neither shape always runs on a colder or busier server.
      const shapes: Shape[] = i % 2 === 0 ? ["as the server makes it", "lease row"] : ["lease row", "as the server makes it"];
      for (const shape of shapes)
        console.log(`${shape.padEnd(22)} run ${i + 1}: ${await drainOnce(connections, shape, `row_work_${i}_${shape === "lease row" ? "l" : "s"}`)}`);
    }
  } finally {
    await Promise.all(connections.map((c) => c.end()));
  }
} finally {
  await database.drop();
}
