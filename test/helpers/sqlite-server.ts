/**
 * One populus-server on a fresh SQLite database for a whole test file: started before its tests,
 * asserted to exit 0 on SIGTERM after them, its database dropped.
 */
import type { TestFn } from "ava";
import { createTestDatabase, type TestDatabase } from "./databases.js";
import { type ServerProcess, startServer } from "./server-process.js";

/** Registers the hooks on `test`; the answer gives the running server inside the tests. */
export function sqliteServerPerFile(test: TestFn): () => ServerProcess {
  let db: TestDatabase | undefined;
  let server: ServerProcess | undefined;
  test.before(async () => {
    db = await createTestDatabase("sqlite");
    server = await startServer({ database: db.url });
  });
  test.after.always(async (t) => {
    if (server !== undefined) t.is(await server.stop(), 0, "server exits 0 on SIGTERM");
    await db?.drop();
  });
  return () => {
    if (server === undefined) throw new Error("the file's server has not started");
    return server;
  };
}
