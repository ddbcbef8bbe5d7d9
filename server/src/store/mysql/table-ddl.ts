/**
 * MySQL/MariaDB DDL of a declared table: its jobs table `~~name` and its
 * target `name`. The SQLite twin is store/sqlite/table-ddl.ts; the columns are
 * the same. DDL commits implicitly in MySQL, so declaration runs before the
 * refresh transaction, and CREATE ... IF NOT EXISTS makes a concurrent
 * declaration by another replica harmless.
 *
 * Every column a lease changes is fixed-size and NOT NULL (status CHAR(8), lease_batch CHAR(32),
 * the times, attempts), so InnoDB updates a reserved job's record in place: it logs the changed
 * bytes, not a new version of the whole record. (A lease also sets progress to NULL, which changes
 * nothing unless an earlier lease of the job reported progress.) Who holds the lease is written
 * once per batch, in `~populus_leases` (migration 0005), and copied into the job only when it ends
 * in error, kept success or worker lost. Tables made before migration 0005 keep their nullable
 * columns and work the same, without the in-place update.
 */

/** Backquotes an identifier that already passed table-name.ts validation. */
export function q(identifier: string): string {
  return `\`${identifier.replaceAll("`", "``")}\``;
}

export function jobsTable(table: string): string {
  return q(`~~${table}`);
}

export function targetTable(table: string): string {
  return q(table);
}

/** Statements that create the jobs table and target of `table`. */
export function createTableStatements(table: string): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${jobsTable(table)} (
      id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
      key_hash CHAR(32) CHARACTER SET ascii NOT NULL,
      key_json MEDIUMTEXT NOT NULL,
      status CHAR(8) CHARACTER SET ascii NOT NULL,
      priority SMALLINT NOT NULL,
      create_time BIGINT NOT NULL,
      scheduled_time BIGINT NOT NULL,
      reserve_time BIGINT NOT NULL DEFAULT 0,
      complete_time BIGINT NULL,
      duration_ms BIGINT NULL,
      lease_batch CHAR(32) CHARACTER SET ascii NOT NULL DEFAULT '',
      lease_expire_time BIGINT NOT NULL DEFAULT 0,
      attempts INT NOT NULL DEFAULT 0,
      worker_id VARCHAR(255) NULL,
      host VARCHAR(255) NULL,
      pid INT UNSIGNED NULL,
      user VARCHAR(255) NULL,
      code_version VARCHAR(255) NULL,
      error_message TEXT NULL,
      error_stack MEDIUMTEXT NULL,
      progress DOUBLE NULL,
      progress_message VARCHAR(255) NULL,
      UNIQUE KEY key_hash_idx (key_hash),
      -- Reserve's total order; its status prefix also serves the lease sweep. Fenced writes find
      -- their row by id (carried in the lease token), so lease_batch has no index.
      KEY ready_idx (status, priority, scheduled_time, id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
    `CREATE TABLE IF NOT EXISTS ${targetTable(table)} (
      key_hash CHAR(32) CHARACTER SET ascii NOT NULL PRIMARY KEY,
      key_json MEDIUMTEXT NOT NULL,
      result_json MEDIUMTEXT NOT NULL,
      lease_token VARCHAR(64) CHARACTER SET ascii NULL,
      complete_time BIGINT NOT NULL,
      KEY lease_token_idx (lease_token)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
  ];
}
