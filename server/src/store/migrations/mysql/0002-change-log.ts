/**
 * MySQL/MariaDB migration 0002: the change log behind Watch (store/change-log.ts).
 * Numbered alike in store/migrations/sqlite/0002-change-log.ts. Never edit once merged.
 *
 * AUTO_INCREMENT is persistent in InnoDB (MariaDB ≥ 10.2.4, MySQL ≥ 8.0), so event ids never go
 * back after pruning or a restart: a cursor stays meaningful for as long as its events are kept.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class ChangeLog0000000000002 implements MigrationInterface {
  name = "ChangeLog0000000000002";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE IF NOT EXISTS \`~populus_events\` (
      id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
      table_name VARCHAR(64) CHARACTER SET ascii NOT NULL,
      time BIGINT NOT NULL,
      deltas VARCHAR(512) CHARACTER SET ascii NOT NULL,
      events LONGTEXT NOT NULL,
      KEY time_idx (time)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
    // Small named values shared by replicas; today the highest pruned event id (OUT_OF_RANGE below it).
    await q.query(`CREATE TABLE IF NOT EXISTS \`~populus_meta\` (
      name VARCHAR(64) CHARACTER SET ascii NOT NULL PRIMARY KEY,
      value BIGINT NOT NULL
    ) ENGINE=InnoDB`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query("DROP TABLE IF EXISTS `~populus_meta`");
    await q.query("DROP TABLE IF EXISTS `~populus_events`");
  }
}
