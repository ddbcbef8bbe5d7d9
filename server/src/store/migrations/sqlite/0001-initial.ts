/**
 * SQLite migration 0001: the registry of tables and the staging area of
 * multi-call refreshes. Per-table jobs (`~~name`) and target (`name`) tables
 * are created when a table is declared (store/sqlite/table-ddl.ts).
 * Numbered alike in store/migrations/mysql/0001-initial.ts. Never edit once merged.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class Initial0000000000001 implements MigrationInterface {
  name = "Initial0000000000001";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE IF NOT EXISTS "~populus_tables" (
      name TEXT PRIMARY KEY NOT NULL,
      display_name TEXT NOT NULL,
      key_attributes TEXT NOT NULL,
      create_time INTEGER NOT NULL,
      last_refresh_time INTEGER
    )`);
    // One row per multi-call refresh in progress: its stale cutoff, fixed at its first call, and
    // whether stale jobs were possible then (only then are its keys staged).
    await q.query(`CREATE TABLE IF NOT EXISTS "~populus_refreshes" (
      refresh TEXT PRIMARY KEY NOT NULL,
      table_name TEXT NOT NULL,
      stale_cutoff INTEGER NOT NULL,
      staging INTEGER NOT NULL,
      create_time INTEGER NOT NULL
    )`);
    // The keys a multi-call refresh has carried so far, for stale removal on its final call.
    await q.query(`CREATE TABLE IF NOT EXISTS "~populus_refresh_keys" (
      refresh TEXT NOT NULL,
      key_hash TEXT NOT NULL,
      create_time INTEGER NOT NULL,
      PRIMARY KEY (refresh, key_hash)
    ) WITHOUT ROWID`);
    await q.query(`CREATE INDEX IF NOT EXISTS "~populus_refresh_keys_age" ON "~populus_refresh_keys" (create_time)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS "~populus_refresh_keys"`);
    await q.query(`DROP TABLE IF EXISTS "~populus_refreshes"`);
    await q.query(`DROP TABLE IF EXISTS "~populus_tables"`);
  }
}
