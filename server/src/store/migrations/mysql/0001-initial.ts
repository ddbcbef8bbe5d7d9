/**
 * MySQL/MariaDB migration 0001: the registry of tables and the staging area
 * of multi-call refreshes. Per-table jobs (`~~name`) and target (`name`)
 * tables are created when a table is declared (store/mysql/table-ddl.ts).
 * Numbered alike in store/migrations/sqlite/0001-initial.ts. Never edit once merged.
 *
 * Hashes and tokens are ASCII so that their indexes stay small; names and
 * JSON are utf8mb4.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class Initial0000000000001 implements MigrationInterface {
  name = "Initial0000000000001";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE IF NOT EXISTS \`~populus_tables\` (
      name VARCHAR(64) CHARACTER SET ascii NOT NULL PRIMARY KEY,
      display_name VARCHAR(64) CHARACTER SET ascii NOT NULL,
      key_attributes TEXT NOT NULL,
      create_time BIGINT NOT NULL,
      last_refresh_time BIGINT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
    // One row per multi-call refresh in progress: its stale cutoff, fixed at its first call, and
    // whether stale jobs were possible then (only then are its keys staged).
    await q.query(`CREATE TABLE IF NOT EXISTS \`~populus_refreshes\` (
      refresh CHAR(32) CHARACTER SET ascii NOT NULL PRIMARY KEY,
      table_name VARCHAR(64) CHARACTER SET ascii NOT NULL,
      stale_cutoff BIGINT NOT NULL,
      staging TINYINT NOT NULL,
      create_time BIGINT NOT NULL,
      KEY age_idx (create_time)
    ) ENGINE=InnoDB`);
    // The keys a multi-call refresh has carried so far, for stale removal on its final call.
    // Narrow on purpose: a 1,000,000-key refresh stages 1,000,000 rows (measured: 64-byte rows
    // with key_json made the refresh I/O-bound in the default 128 MB buffer pool).
    await q.query(`CREATE TABLE IF NOT EXISTS \`~populus_refresh_keys\` (
      refresh CHAR(32) CHARACTER SET ascii NOT NULL,
      key_hash CHAR(32) CHARACTER SET ascii NOT NULL,
      create_time BIGINT NOT NULL,
      PRIMARY KEY (refresh, key_hash),
      KEY age_idx (create_time)
    ) ENGINE=InnoDB`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query("DROP TABLE IF EXISTS `~populus_refresh_keys`");
    await q.query("DROP TABLE IF EXISTS `~populus_refreshes`");
    await q.query("DROP TABLE IF EXISTS `~populus_tables`");
  }
}
