/**
 * MySQL/MariaDB migration 0007: `made_due` on the refresh claims (store/operations/refresh-claims.ts).
 * Numbered alike in store/migrations/sqlite/0007-claims-made-due.ts. Never edit once merged.
 *
 * An operator's DeleteJobs or DeleteTargets makes the table's next refresh due at once. A claimed
 * refresh running meanwhile may have read its key source before the delete, so its finish must
 * not count as that next refresh: the flag says so, and the finish records no time. Its claim
 * stays held (one refresh at a time), where freeing it would let a second read of the key source
 * start beside the first.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class ClaimsMadeDue0000000000007 implements MigrationInterface {
  name = "ClaimsMadeDue0000000000007";

  async up(q: QueryRunner): Promise<void> {
    // Looked for first, as 0005 does: MySQL 8 has no ADD COLUMN IF NOT EXISTS (MariaDB has), and DDL
    // commits on its own, so a start that crashed after it and before the migration was recorded runs it again.
    if (await hasMadeDue(q)) return;
    await q.query("ALTER TABLE `~populus_refresh_claims` ADD COLUMN made_due TINYINT NOT NULL DEFAULT 0");
  }

  async down(q: QueryRunner): Promise<void> {
    if (await hasMadeDue(q)) await q.query("ALTER TABLE `~populus_refresh_claims` DROP COLUMN made_due");
  }
}

async function hasMadeDue(q: QueryRunner): Promise<boolean> {
  const columns: unknown[] = await q.query("SHOW COLUMNS FROM `~populus_refresh_claims` LIKE 'made_due'");
  return columns.length > 0;
}
