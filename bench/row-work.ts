/**
 * An experiment, not a scenario of `npm run bench`: what MariaDB spends per drained job, with the
 * jobs table as the server makes it and with a proposed "lease row" shape, the drain's own
 * statements sent by mysql2 alone (no Populus process in the way), by one connection or by several
 * at once (their Reserves taking turns, as the server's do per table).
 *
 *   node --import tsx bench/row-work.ts [jobs=20000] [repetitions=3] [connections=1]
 *
 * Why: on two cores MariaDB takes half or more of a drained job's CPU (scenario 1 prints its
 * share), and most of the redo log it writes per job is Reserve's. Reserve's UPDATE changes columns
 * whose stored size changes (NULL to a lease token, a worker id, host, user and times; 'pending' to
 * 'reserved'), so InnoDB cannot update the clustered record in place: it writes a new version of
 * the whole record and logs it. In the lease-row shape a reservation changes only fixed-size
 * columns of the job (status CHAR(8), a lease id, attempts) and writes the holder and the times
 * once per batch, in a row of its own, so the clustered record is updated in place. In both shapes
 * the ready index's entry still moves (status leads it).
 *
 * The statements are the server's for a batch (mysql-dialect.ts, operations/reserve.ts,
 * reserve-requests.ts, complete.ts), with these differences: the change log's counts are literals
 * (the server counts the target's rows in SQL), and neither the lease rows nor the request records
 * are ever deleted (the server's sweep deletes expired request records; a lease row would go with
 * its last job).
 *
 * Printed per shape and repetition: jobs/s, MariaDB's CPU per job (/proc, in 10 ms ticks) and the
 * redo log InnoDB wrote per job (Innodb_os_log_written) once its purge of the drain was done; with
 * one connection also the redo of the Reserves and of the Completes alone, read around each one
 * (those reads run inside the timed window, so one connection's jobs/s are a little low).
 * Global counters: run it alone on the database server.
 */
import mysql from "mysql2/promise";
import { createTableStatements, jobsTable, targetTable } from "../server/dist/store/mysql/table-ddl.js";
import { TurnsPerKey } from "../server/dist/store/turns.js";
import { createTestDatabase } from "../test/helpers/databases.js";
import { startServer } from "../test/helpers/server-process.js";
import { MariadbCounters } from "./mariadb-counters.js";

/** A positive whole number from argv[`at`], or `otherwise`. */
function countArg(at: number, name: string, otherwise: number): number {
  const given = process.argv[at];
  const n = given === undefined ? otherwise : Number(given);
  if (!Number.isInteger(n) || n < 1) throw new Error(`row-work: ${name} must be a whole number of at least 1, not "${given}"`);
  return n;
}

const JOBS = countArg(2, "jobs", 20_000);
const REPETITIONS = countArg(3, "repetitions", 3);
/** Connections draining at once, as worker processes do (Reserves and Completes of different batches then overlap). */
const CONNECTIONS = countArg(4, "connections", 1);
/** The SDK's largest batch. */
const BATCH = 1000;
const EVENTS = "`~populus_events`";
const REQUESTS = "`~populus_reserve_requests`";
const LEASES = "`~bench_leases`";
const WORKER = { id: "bench:1:0123abcd", host: "bench", pid: 1, user: "bench" };

type Shape = "as the server makes it" | "lease row";
type JobId = string | number;

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

/** The change log's events of a batch: its keys as one group. */
const eventsOf = (status: string, committed: boolean, keys: readonly { key_json: string }[]) =>
  quote(JSON.stringify([{ s: status, w: WORKER.id, c: committed ? 1 : 0, k: keys.map((r) => JSON.parse(r.key_json)) }]));

/** One Reserve of up to BATCH jobs, as the server sends it: the request's record and the locking read, then the lease. The jobs it leased. */
async function reserve(c: mysql.Connection, shape: Shape, table: string, now: number, prefix: string): Promise<{ id: JobId; key_json: string }[]> {
  const jobs = jobsTable(table);
  const [[, , ready]] = (await c.query(
    `START TRANSACTION;
     SELECT lease_prefix, job_ids, lease_expire_time FROM ${REQUESTS} WHERE table_name = '${table}' AND request_id = '${prefix}' FOR UPDATE;
     SELECT id, key_json, priority, attempts FROM ${jobs} FORCE INDEX (ready_idx) WHERE status = 'pending' AND scheduled_time <= ${now}
       ORDER BY priority, scheduled_time, id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED`,
  )) as unknown as [[unknown, unknown, { id: JobId; key_json: string }[]]];
  if (ready.length === 0) {
    await c.query("COMMIT");
    return ready;
  }
  const ids = ready.map((r) => r.id).join(",");
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
     INSERT INTO ${EVENTS} (table_name, time, deltas, events) VALUES ('${table}', ${now}, '{"pending":-${ready.length},"reserved":${ready.length}}', ${eventsOf("reserved", false, ready)});
     INSERT INTO ${REQUESTS} (table_name, request_id, lease_prefix, job_ids, lease_expire_time) VALUES ('${table}', '${prefix}', '${prefix}', '${ids}', ${now + 60_000});
     COMMIT`,
  );
  return ready;
}

/** One Complete of a batch, as MariaDB's is sent: its held jobs deleted and read back, then their results and the change log. */
async function complete(c: mysql.Connection, shape: Shape, table: string, now: number, prefix: string, batch: readonly { id: JobId }[]): Promise<void> {
  const ids = batch.map((r) => r.id).join(",");
  const token = (id: JobId) => `${prefix}-${Number(id).toString(36)}`;
  const fence =
    shape === "lease row"
      ? `lease_id = (SELECT id FROM ${LEASES} WHERE prefix = '${prefix}' AND table_name = '${table}')`
      : `lease_token IN (${batch.map((r) => `'${token(r.id)}'`).join(",")})`;
  const returning = shape === "lease row" ? "id, key_hash, key_json" : "id, key_hash, key_json, lease_token, worker_id";
  const [[, held]] = (await c.query(
    `START TRANSACTION; DELETE FROM ${jobsTable(table)} WHERE status = 'reserved' AND id IN (${ids}) AND ${fence} ORDER BY id LIMIT ${batch.length}
     RETURNING ${returning}`,
  )) as unknown as [[unknown, { id: JobId; key_hash: string; key_json: string }[]]];
  const results = held.map((r) => `('${r.key_hash}', ${quote(r.key_json)}, '{}', '${token(r.id)}', ${now})`);
  await c.query(
    `INSERT INTO ${targetTable(table)} (key_hash, key_json, result_json, lease_token, complete_time) VALUES ${results.join(",")} ON DUPLICATE KEY UPDATE key_hash = key_hash;
     INSERT INTO ${EVENTS} (table_name, time, deltas, events) VALUES ('${table}', ${now}, '{"reserved":-${held.length},"target":${held.length}}', ${eventsOf("deleted", true, held)});
     COMMIT`,
  );
}

/** The redo of Reserves and of Completes, read around each (with one connection only: with more, theirs interleave). */
interface RedoSplit {
  readonly counters: MariadbCounters;
  reserve: number;
  complete: number;
}

/** One connection's loop: Reserve a batch, Complete it, until no job is left; `worker` tells its leases apart. */
async function workerLoop(c: mysql.Connection, shape: Shape, table: string, now: number, worker: number, turns: TurnsPerKey, split?: RedoSplit): Promise<void> {
  for (let batch = 0; ; batch++) {
    const prefix = `${worker.toString(16).padStart(2, "0")}${batch.toString(16).padStart(6, "0")}${"c".repeat(24)}`;
    const redo0 = await split?.counters.redoBytes();
    const ready = await turns.run(table, () => reserve(c, shape, table, now, prefix));
    if (ready.length === 0) return;
    const redo1 = await split?.counters.redoBytes();
    await complete(c, shape, table, now, prefix, ready);
    if (split !== undefined && redo0 !== undefined && redo1 !== undefined) {
      split.reserve += redo1 - redo0;
      split.complete += (await split.counters.redoBytes()) - redo1;
    }
  }
}

/** One drain of JOBS jobs in `shape` by every connection at once. */
async function drainOnce(connections: readonly mysql.Connection[], counters: MariadbCounters, shape: Shape, table: string): Promise<string> {
  const [c] = connections as [mysql.Connection];
  for (const statement of ddl(shape, table)) await c.query(statement);
  const now = Date.now();
  for (let from = 0; from < JOBS; from += BATCH) {
    const rows = [];
    for (let k = from; k < Math.min(JOBS, from + BATCH); k++)
      rows.push(`('${k.toString(36).padStart(32, "0")}', '{"k":"${k}"}', 'pending', 5, ${now}, ${now}, 0)`);
    await c.query(`INSERT INTO ${jobsTable(table)} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts) VALUES ${rows.join(",")}`);
  }
  const split: RedoSplit | undefined = connections.length === 1 ? { counters, reserve: 0, complete: 0 } : undefined;
  // The table's Reserves take turns, as the server's do (TurnsPerKey): each one's SKIP LOCKED scan
  // would otherwise step over the rows the others had just locked.
  const turns = new TurnsPerKey();
  const before = await counters.read();
  const started = performance.now();
  // allSettled: a loop that fails must not leave the others running on connections closed after.
  const loops = await Promise.allSettled(connections.map((connection, worker) => workerLoop(connection, shape, table, now, worker, turns, split)));
  const seconds = (performance.now() - started) / 1000;
  const failed = loops.find((l) => l.status === "rejected");
  if (failed !== undefined) throw failed.reason;
  const work = await counters.per(before, JOBS);
  const [[{ n }]] = (await c.query(`SELECT COUNT(*) AS n FROM ${targetTable(table)}`)) as unknown as [[{ n: number }]];
  if (Number(n) !== JOBS) throw new Error(`row-work: ${n} results for ${JOBS} jobs`);
  const parts = split === undefined ? "" : ` (Reserves ${(split.reserve / JOBS).toFixed(0)}, Completes ${(split.complete / JOBS).toFixed(0)})`;
  return `${(JOBS / seconds).toFixed(0)} jobs/s; a job: MariaDB ${work.cpuUs.toFixed(0)} µs, ${work.redoBytes.toFixed(0)} B of redo${parts}`;
}

const database = await createTestDatabase("mysql");
try {
  // The server's own change log and reserve-request tables, made by its migrations.
  await (await startServer({ database: database.url })).stop();
  const counters = await MariadbCounters.open(database.url);
  if (counters === undefined) throw new Error("row-work: no mariadbd process to read on this machine");
  const opened = await Promise.allSettled(
    Array.from({ length: CONNECTIONS }, async () => {
      const c = await mysql.createConnection({ uri: database.url, multipleStatements: true });
      await c.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
      return c;
    }),
  );
  const connections = opened.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []));
  try {
    const failed = opened.find((o) => o.status === "rejected");
    if (failed !== undefined) throw failed.reason;
    for (let i = 0; i < REPETITIONS; i++) {
      // Alternated, so that neither shape always runs on a colder or busier server.
      const shapes: Shape[] = i % 2 === 0 ? ["as the server makes it", "lease row"] : ["lease row", "as the server makes it"];
      for (const shape of shapes)
        console.log(`${shape.padEnd(22)} run ${i + 1}: ${await drainOnce(connections, counters, shape, `row_work_${i}_${shape === "lease row" ? "l" : "s"}`)}`);
    }
  } finally {
    await Promise.allSettled([...connections.map((c) => c.end()), counters.close()]);
  }
} finally {
  await database.drop();
}
