/**
 * MySQL/MariaDB migration 0005: who holds a lease, once per Reserve batch. Numbered alike in
 * store/migrations/sqlite/0005-lease-rows.ts. Never edit once merged.
 *
 * A Reserve wrote its worker's id, host, pid, user and code version and its lease token into every
 * job it leased: variable-size values into columns that were NULL, so InnoDB wrote each reserved
 * job's record anew (about 1,150 bytes of redo a job; README, "Benchmark"). Now a batch's holder is
 * one row here, keyed by the batch's random prefix (a lease token is prefix + '-' + job id), and a
 * job records only which batch holds it (`lease_batch`). Jobs tables made from now on have only
 * fixed-size lease columns (store/mysql/table-ddl.ts); those made before get `lease_batch` here
 * and keep their other columns (the server writes the holder's there only as it does in new
 * tables, and no longer reads or writes `lease_token`).
 *
 * Leases held across the upgrade carry on: each reserved job gets the batch of its token and each
 * batch a lease row from its jobs' holder, and so does each error job, whose Fail a repeat finds
 * by its batch. Stop every replica before upgrading: an older server leases without setting
 * `lease_batch`, and fences by `lease_token`, which this one leaves as it was.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class LeaseRows0000000000005 implements MigrationInterface {
  name = "LeaseRows0000000000005";

  async up(q: QueryRunner): Promise<void> {
    // Kept until the lease sweep finds expire_time a minute past (Heartbeat moves it with its jobs' expiry).
    await q.query(`CREATE TABLE IF NOT EXISTS \`~populus_leases\` (
      batch CHAR(32) CHARACTER SET ascii NOT NULL PRIMARY KEY,
      worker_id VARCHAR(255) NOT NULL,
      host VARCHAR(255) NOT NULL,
      pid INT UNSIGNED NOT NULL,
      user VARCHAR(255) NOT NULL,
      code_version VARCHAR(255) NOT NULL,
      expire_time BIGINT NOT NULL,
      KEY expire_idx (expire_time)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
    // Every jobs table, declared or not: a declaration that crashed after its DDL left one unlisted.
    const tables: { name: string }[] = await q.query(
      "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE '~~%'",
    );
    for (const { name } of tables) {
      const quoted = `\`${name.replaceAll("`", "``")}\``;
      const columns: unknown[] = await q.query(`SHOW COLUMNS FROM ${quoted} LIKE 'lease_batch'`);
      if (columns.length > 0) continue;
      await q.query(`ALTER TABLE ${quoted} ADD COLUMN lease_batch CHAR(32) CHARACTER SET ascii NOT NULL DEFAULT ''`);
      // A token is its batch (32 hex digits), '-', and the job id in base 36.
      await q.query(`UPDATE ${quoted} SET lease_batch = LEFT(lease_token, 32) WHERE status IN ('reserved', 'error') AND lease_token IS NOT NULL`);
      await q.query(`INSERT IGNORE INTO \`~populus_leases\` (batch, worker_id, host, pid, user, code_version, expire_time)
        SELECT lease_batch, MAX(COALESCE(worker_id, '')), MAX(COALESCE(host, '')), MAX(COALESCE(pid, 0)), MAX(COALESCE(user, '')),
               MAX(COALESCE(code_version, '')), MAX(COALESCE(lease_expire_time, 0))
        FROM ${quoted} WHERE status = 'reserved' AND lease_batch <> '' GROUP BY lease_batch`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query("DROP TABLE IF EXISTS `~populus_leases`");
  }
}
