/**
 * SQLite migration 0004: each declared table's key hash scheme (key-codec.ts, KeyHashScheme).
 * Numbered alike in store/migrations/mysql/0004-key-hash-scheme.ts. Never edit once merged.
 *
 * Tables declared before it hash their keys by "sha256", and keep doing so: their rows are found by
 * those hashes. The default is that scheme, so a server of an earlier version that declares a
 * table in this file still records how it hashed. Tables declared from now on record "ordered".
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class KeyHashScheme0000000000004 implements MigrationInterface {
  name = "KeyHashScheme0000000000004";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "~populus_tables" ADD COLUMN key_hash TEXT NOT NULL DEFAULT 'sha256'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "~populus_tables" DROP COLUMN key_hash`);
  }
}
