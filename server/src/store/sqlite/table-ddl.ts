/**
 * SQLite DDL of a declared table: its jobs table `~~name` and its target
 * `name`. Created inside the declaring refresh's transaction.
 * The MySQL twin is store/mysql/table-ddl.ts; the columns are the same, and so is
 * why a lease's holder is in `~populus_leases` rather than in each job.
 */

/** Double-quotes an identifier that already passed table-name.ts validation. */
export function q(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}

export function jobsTable(table: string): string {
  return q(`~~${table}`);
}

export function targetTable(table: string): string {
  return q(table);
}

/** Statements that create the jobs table and target of `table`. */
export function createTableStatements(table: string): string[] {
  const jobs = jobsTable(table);
  const target = targetTable(table);
  return [
    `CREATE TABLE IF NOT EXISTS ${jobs} (
      id INTEGER PRIMARY KEY,
      key_hash TEXT NOT NULL UNIQUE,
      key_json TEXT NOT NULL,
      status TEXT NOT NULL,
      priority INTEGER NOT NULL,
      create_time INTEGER NOT NULL,
      scheduled_time INTEGER NOT NULL,
      reserve_time INTEGER NOT NULL DEFAULT 0,
      complete_time INTEGER,
      duration_ms INTEGER,
      lease_batch TEXT NOT NULL DEFAULT '',
      lease_expire_time INTEGER NOT NULL DEFAULT 0,
      attempts INTEGER NOT NULL DEFAULT 0,
      worker_id TEXT,
      host TEXT,
      pid INTEGER,
      user TEXT,
      code_version TEXT,
      error_message TEXT,
      error_stack TEXT,
      progress REAL,
      progress_message TEXT
    )`,
    // Serves Reserve (the next ready job by priority, then scheduled time, then id) and, by its status
    // prefix, the lease sweep. Fenced writes find their row by id (the lease token carries it), so
    // lease_batch needs no index: every index costs each refresh insert.
    `CREATE INDEX IF NOT EXISTS ${q(`~~${table}~ready`)} ON ${jobs} (status, priority, scheduled_time, id)`,
    `CREATE TABLE IF NOT EXISTS ${target} (
      key_hash TEXT PRIMARY KEY NOT NULL,
      key_json TEXT NOT NULL,
      result_json TEXT NOT NULL,
      lease_token TEXT,
      complete_time INTEGER NOT NULL
    )`,
    // Serves the idempotent repeat of a Complete: was this lease already committed?
    `CREATE INDEX IF NOT EXISTS ${q(`${table}~lease`)} ON ${target} (lease_token)`,
  ];
}
