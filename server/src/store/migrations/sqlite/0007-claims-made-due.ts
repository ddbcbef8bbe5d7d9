/**
 * SQLite migration 0007: `made_due` on the refresh claims. Numbered alike in
 * store/migrations/mysql/0007-claims-made-due.ts, which says why; never edit once merged.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class ClaimsMadeDue0000000000007 implements MigrationInterface {
  name = "ClaimsMadeDue0000000000007";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "~populus_refresh_claims" ADD COLUMN made_due INTEGER NOT NULL DEFAULT 0`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "~populus_refresh_claims" DROP COLUMN made_due`);
  }
}
