/**
 * MySQL/MariaDB migration 0006: the claims that coordinate populate loops' refreshes (promise 4,
 * store/operations/refresh-claims.ts). Numbered alike in store/migrations/sqlite/0006-refresh-claims.ts.
 * Never edit once merged.
 *
 * A table of its own rather than columns of `~populus_tables`: a table is claimed before its first
 * refresh declares it (workers that start together on a new table read its key source once), and
 * `~populus_tables.last_refresh_time` stays as migration 0001 made it for servers that predate this.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class RefreshClaims0000000000006 implements MigrationInterface {
  name = "RefreshClaims0000000000006";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE IF NOT EXISTS \`~populus_refresh_claims\` (
      table_name VARCHAR(64) NOT NULL PRIMARY KEY,
      claim_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
      claim_timeout_ms BIGINT NULL,
      claim_expire_time BIGINT NULL,
      last_refresh_time BIGINT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query("DROP TABLE IF EXISTS `~populus_refresh_claims`");
  }
}
