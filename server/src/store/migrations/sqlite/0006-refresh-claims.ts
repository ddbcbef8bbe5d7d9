/**
 * SQLite migration 0006: the claims that coordinate populate loops' refreshes. Numbered alike in
 * store/migrations/mysql/0006-refresh-claims.ts, which says why; never edit once merged.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class RefreshClaims0000000000006 implements MigrationInterface {
  name = "RefreshClaims0000000000006";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE IF NOT EXISTS "~populus_refresh_claims" (
      table_name TEXT PRIMARY KEY NOT NULL,
      claim_id TEXT,
      claim_timeout_ms INTEGER,
      claim_expire_time INTEGER,
      last_refresh_time INTEGER
    )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS "~populus_refresh_claims"`);
  }
}
