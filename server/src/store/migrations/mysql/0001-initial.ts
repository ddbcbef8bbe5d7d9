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
    await q.query(`CREATE TABLE IF NOT EXISTS \`~populus_refresh_keys\` (
      table_name VARCHAR(64) CHARACTER SET ascii NOT NULL,
      refresh_id VARCHAR(64) CHARACTER SET ascii NOT NULL,
      key_hash CHAR(32) CHARACTER SET ascii NOT NULL,
      key_json MEDIUMTEXT NOT NULL,
      call_id CHAR(32) CHARACTER SET ascii NOT NULL,
      create_time BIGINT NOT NULL,
      PRIMARY KEY (table_name, refresh_id, key_hash),
      KEY call_idx (call_id),
      KEY age_idx (create_time)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query("DROP TABLE IF EXISTS `~populus_refresh_keys`");
    await q.query("DROP TABLE IF EXISTS `~populus_tables`");
  }
}
