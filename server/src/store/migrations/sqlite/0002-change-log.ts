/**
 * SQLite migration 0002: the change log behind Watch (store/change-log.ts).
 * Numbered alike in store/migrations/mysql/0002-change-log.ts. Never edit once merged.
 *
 * AUTOINCREMENT (not a plain rowid) so that ids are never reused after the newest rows are
 * pruned: a cursor stays meaningful for as long as its events are kept.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class ChangeLog0000000000002 implements MigrationInterface {
  name = "ChangeLog0000000000002";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE IF NOT EXISTS "~populus_events" (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      table_name TEXT NOT NULL,
      time INTEGER NOT NULL,
      deltas TEXT NOT NULL,
      events TEXT NOT NULL
    )`);
    await q.query(`CREATE INDEX IF NOT EXISTS "~populus_events_time" ON "~populus_events" (time)`);
    // Small named values; today the highest pruned event id (OUT_OF_RANGE below it).
    await q.query(`CREATE TABLE IF NOT EXISTS "~populus_meta" (
      name TEXT PRIMARY KEY NOT NULL,
      value INTEGER NOT NULL
    )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS "~populus_meta"`);
    await q.query(`DROP TABLE IF EXISTS "~populus_events"`);
  }
}
