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
 * How many transactions wait for a row lock in the locker's database now. Only this database's:
 * other tests' lock waits on the same MariaDB show in INNODB_TRX too.
 */
async function lockWaits(locker: mysql.Connection): Promise<number> {
  const [rows] = await locker.query(
    `SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
      WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()`,
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
