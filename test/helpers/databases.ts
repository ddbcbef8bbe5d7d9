/**
 * Where the tests' databases live. One decision per test process:
 *
 * - MySQL family: POPULUS_TEST_MYSQL_URL if set (a server URL, no database),
 *   else the MariaDB on 127.0.0.1:3306 if it answers, else a MySQL 8
 *   container from testcontainers when a Docker engine answers. Otherwise the
 *   MySQL tests fail with one line saying how to provide a database (never a
 *   silent skip); POPULUS_TEST_DIALECTS=sqlite opts out explicitly.
 * - SQLite: a file in a fresh temp directory, always.
 *
 * Each call makes its own database (`populus_test_<random>`), dropped by the
 * returned drop(); every run prints which server it used.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";

export type Dialect = "sqlite" | "mysql";

/** A database made for one test file. */
export interface TestDatabase {
  readonly dialect: Dialect;
  /** The URL the server takes (--database / POPULUS_DATABASE_URL). */
  readonly url: string;
  /** Removes the database (or the SQLite file's directory). */
  drop(): Promise<void>;
}

/** The dialects this run covers: POPULUS_TEST_DIALECTS (comma list) or both. */
export function testDialects(): Dialect[] {
  const raw = process.env.POPULUS_TEST_DIALECTS;
  if (raw === undefined || raw.trim() === "") return ["sqlite", "mysql"];
  const list = raw.split(",").map((s) => s.trim());
  for (const d of list) {
    if (d !== "sqlite" && d !== "mysql") throw new Error(`POPULUS_TEST_DIALECTS: unknown dialect "${d}"; use sqlite, mysql or both`);
  }
  return list as Dialect[];
}

const LOCAL_MARIADB = "mysql://root@127.0.0.1:3306";

let serverUrl: Promise<string> | undefined;

async function answers(url: string): Promise<boolean> {
  try {
    const c = await mysql.createConnection({ uri: url, connectTimeout: 2000 });
    await c.end();
    return true;
  } catch {
    return false;
  }
}

async function dockerAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

/** The MySQL-family server URL (no database), decided once per process. */
function mysqlServerUrl(): Promise<string> {
  serverUrl ??= (async () => {
    const fromEnv = process.env.POPULUS_TEST_MYSQL_URL;
    if (fromEnv !== undefined && fromEnv !== "") {
      console.log(`# MySQL tests: POPULUS_TEST_MYSQL_URL (${fromEnv.replace(/:[^:@/]*@/, ":***@")})`);
      return fromEnv.replace(/\/+$/, "");
    }
    if (await answers(LOCAL_MARIADB)) {
      console.log(`# MySQL tests: local server at ${LOCAL_MARIADB}`);
      return LOCAL_MARIADB;
    }
    if (await dockerAnswers()) {
      const { MySqlContainer } = await import("@testcontainers/mysql");
      const container = await new MySqlContainer("mysql:8.0").withRootPassword("populus").start();
      process.once("exit", () => void container.stop());
      const url = `mysql://root:populus@${container.getHost()}:${container.getPort()}`;
      console.log(`# MySQL tests: testcontainers mysql:8.0 at ${container.getHost()}:${container.getPort()}`);
      return url;
    }
    throw new Error(
      "no MySQL/MariaDB for the tests: set POPULUS_TEST_MYSQL_URL=mysql://user:pass@host:port, start MariaDB on 127.0.0.1:3306, " +
        "or run a Docker engine (testcontainers); or opt out with POPULUS_TEST_DIALECTS=sqlite",
    );
  })();
  return serverUrl;
}

/** Creates a fresh database of the dialect for one test file. */
export async function createTestDatabase(dialect: Dialect): Promise<TestDatabase> {
  if (dialect === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), "populus-test-"));
    console.log(`# SQLite tests: ${dir}/populus.db`);
    return {
      dialect,
      url: `sqlite:${join(dir, "populus.db")}`,
      async drop() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const server = await mysqlServerUrl();
  const name = `populus_test_${randomBytes(6).toString("hex")}`;
  const admin = await mysql.createConnection({ uri: server });
  await admin.query(`CREATE DATABASE \`${name}\``);
  await admin.end();
  return {
    dialect,
    url: `${server}/${name}`,
    async drop() {
      const c = await mysql.createConnection({ uri: server });
      await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await c.end();
    },
  };
}
