/**
 * SQLite migration 0005: who holds a lease, once per Reserve batch. Numbered alike in
 * store/migrations/mysql/0005-lease-rows.ts, which says why; never edit once merged.
 *
 * Jobs tables made before it get `lease_batch` and keep their other lease columns. A lease held
 * across the upgrade is lost to its worker and goes back to pending when it expires.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class LeaseRows0000000000005 implements MigrationInterface {
  name = "LeaseRows0000000000005";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE IF NOT EXISTS "~populus_leases" (
      batch TEXT PRIMARY KEY NOT NULL,
      worker_id TEXT NOT NULL,
      host TEXT NOT NULL,
      pid INTEGER NOT NULL,
      user TEXT NOT NULL,
      code_version TEXT NOT NULL,
      expire_time INTEGER NOT NULL
    )`);
    await q.query(`CREATE INDEX IF NOT EXISTS "~populus_leases~expire" ON "~populus_leases" (expire_time)`);
    const tables: { name: string }[] = await q.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '~~%'");
    for (const { name } of tables) {
      const quoted = `"${name.replaceAll('"', '""')}"`;
      const columns: { name: string }[] = await q.query(`PRAGMA table_info(${quoted})`);
      if (!columns.some((c) => c.name === "lease_batch")) await q.query(`ALTER TABLE ${quoted} ADD COLUMN lease_batch TEXT NOT NULL DEFAULT ''`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS "~populus_leases"`);
  }
}
