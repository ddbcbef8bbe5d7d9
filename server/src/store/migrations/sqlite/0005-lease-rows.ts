/**
 * SQLite migration 0005: who holds a lease, once per Reserve batch. Numbered alike in
 * store/migrations/mysql/0005-lease-rows.ts, which says why; never edit once merged.
 *
 * Jobs tables made before it get `lease_batch` and keep their other lease columns; leases held
 * across the upgrade carry on (their batches and holders filled in from their tokens and rows).
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
      if (columns.some((c) => c.name === "lease_batch")) continue;
      await q.query(`ALTER TABLE ${quoted} ADD COLUMN lease_batch TEXT NOT NULL DEFAULT ''`);
      await q.query(`UPDATE ${quoted} SET lease_batch = substr(lease_token, 1, 32) WHERE status IN ('reserved', 'error') AND lease_token IS NOT NULL`);
      await q.query(`INSERT OR IGNORE INTO "~populus_leases" (batch, worker_id, host, pid, user, code_version, expire_time)
        SELECT lease_batch, MAX(COALESCE(worker_id, '')), MAX(COALESCE(host, '')), MAX(COALESCE(pid, 0)), MAX(COALESCE(user, '')),
               MAX(COALESCE(code_version, '')), MAX(COALESCE(lease_expire_time, 0))
        FROM ${quoted} WHERE status = 'reserved' AND lease_batch <> '' GROUP BY lease_batch`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS "~populus_leases"`);
  }
}
