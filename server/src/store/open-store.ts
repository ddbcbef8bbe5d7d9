/**
 * Opens the store the configuration names, migrated and ready.
 */
import type { DatabaseConfig } from "../config.js";
import { openMysqlStore, type PoolOptions } from "./mysql/mysql-store.js";
import { openSqliteStore, type SqliteOptions } from "./sqlite/sqlite-store.js";
import type { JobStore, StoreOptions } from "./store.js";

export async function openStore(database: DatabaseConfig, options: StoreOptions & PoolOptions & SqliteOptions): Promise<JobStore> {
  return database.dialect === "sqlite" ? openSqliteStore(database.path, options) : openMysqlStore(database, options);
}
