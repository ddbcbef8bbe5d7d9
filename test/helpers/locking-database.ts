/**
 * A server on a fresh MySQL-family database with the given flags, a client of it, and a
 * connection of the test's own (the locker) that holds rows to keep the server's calls waiting;
 * all torn down after the test.
 */
import type { ExecutionContext } from "ava";
import mysql from "mysql2/promise";
import { createTestDatabase } from "./databases.js";
import { type JobsClient, jobsClient, until } from "./jobs-client.js";
import { type ServerProcess, startServer } from "./server-process.js";

export async function serverWithLocker(
  t: ExecutionContext,
  args: readonly string[],
): Promise<{ server: ServerProcess; client: JobsClient; locker: mysql.Connection }> {
  const database = await createTestDatabase("mysql");
  const server = await startServer({ database: database.url, args });
  const locker = await mysql.createConnection({ uri: database.url });
  t.teardown(async () => {
    await locker.end().catch(() => undefined);
    await server.kill();
    await database.drop();
  });
  return { server, client: jobsClient(server.url), locker };
}

/**
 * How many of the server's sessions wait for a row lock in the locker's database now: in InnoDB's
 * LOCK WAIT, or in the processlist's "Updating" (where a DELETE or UPDATE waits for a locked row).
 * Both, because INNODB_TRX alone missed them: in two fresh-clone runs of the suite a Complete's
 * DELETE sat "Updating" on the locked row for 15 s with no INNODB_TRX row at all (not known why:
 * that table is a bounded cache, which the suite's other tests may fill). Only this database's
 * sessions, the locker's own left out: other tests' waits on the same MariaDB show there too.
 */
async function lockWaits(locker: mysql.Connection): Promise<number> {
  const [rows] = await locker.query(
    `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
      WHERE p.DB = DATABASE() AND p.ID <> CONNECTION_ID() AND (t.trx_state = 'LOCK WAIT' OR (p.COMMAND = 'Query' AND p.STATE = 'Updating'))`,
  );
  return Number((rows as { n: number }[])[0]?.n);
}

/**
 * Waits (as until() does) until exactly `n` transactions wait for a row lock in the locker's
 * database. When it times out, the test's log gets what that database's sessions were doing
 * (PROCESSLIST, and each one's InnoDB transaction state), so a failure says what held them.
 */
export async function untilLockWaits(t: ExecutionContext, locker: mysql.Connection, n: number, what: string): Promise<void> {
  try {
    await until(what, async () => (await lockWaits(locker)) === n);
  } catch (err) {
    const [sessions] = await locker.query(
      `SELECT p.ID AS id, p.COMMAND AS command, p.TIME AS seconds, p.STATE AS state, LEFT(p.INFO, 200) AS info, t.trx_state AS trx
         FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
        WHERE p.DB = DATABASE()`,
    );
    t.log(`the database's sessions when the wait timed out: ${JSON.stringify(sessions)}`);
    throw err;
  }
}
