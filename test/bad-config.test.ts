/**
 * A server that cannot run says so in one line and exits: code 2 for a bad
 * configuration (before touching any database or port), code 1 when the
 * world is not as configured (database unreachable, port in use). `--help`
 * documents every option and exits 0.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { createTestDatabase, testDialects } from "./helpers/databases.js";
import { runServerToExit } from "./helpers/server-process.js";

/** Every env var the server reads, unset so that only the flags under test count. */
const CLEAN_ENV: NodeJS.ProcessEnv = {
  POPULUS_HOST: undefined,
  POPULUS_PORT: undefined,
  POPULUS_DATABASE_URL: undefined,
  POPULUS_LOG_LEVEL: undefined,
  POPULUS_SHUTDOWN_GRACE: undefined,
  POPULUS_MAX_LOST_ATTEMPTS: undefined,
};

const dirs: string[] = [];
test.after.always(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Runs the server in an empty temp directory; answers its exit, output, and what it left in the directory. */
async function run(args: readonly string[], env: NodeJS.ProcessEnv = {}) {
  const cwd = mkdtempSync(join(tmpdir(), "populus-badconfig-"));
  dirs.push(cwd);
  const result = await runServerToExit(args, { ...CLEAN_ENV, ...env }, cwd);
  return { ...result, files: readdirSync(cwd) };
}

const exitsWithConfigError = test.macro({
  title: (given, args: readonly string[], _line: string, env?: NodeJS.ProcessEnv) =>
    given ??
    `${
      env === undefined
        ? ""
        : `${Object.entries(env)
            .map(([k, v]) => `${k}=${v}`)
            .join(" ")} `
    }${args.join(" ")} → exit 2, one line`,
  async exec(t, args: readonly string[], line: string, env?: NodeJS.ProcessEnv) {
    const r = await run(args, env);
    t.is(r.code, 2);
    t.is(r.stderr, `populus-server: ${line}\n`, "exactly one line on stderr");
    t.is(r.stdout, "", "nothing logged: it stopped before starting");
    // No --database in most cases: had it opened the default before validating, populus.db would be here.
    t.deepEqual(r.files, [], "no database file created");
  },
});

test(
  exitsWithConfigError,
  ["--database", "nonsense://x"],
  'database URL scheme "nonsense:" is not supported; use sqlite:<path> or mysql://user:pass@host:port/database',
);
test(exitsWithConfigError, ["--database", "not a url"], 'database URL "not a url" is not a URL; use sqlite:<path> or mysql://user:pass@host:port/database');
test(exitsWithConfigError, ["--database", "sqlite:"], 'database URL "sqlite:" has no file path; use sqlite:<path>, e.g. sqlite:populus.db');
test(
  exitsWithConfigError,
  ["--database", "mysql://root:hunter2@127.0.0.1:3306"],
  'database URL "mysql://root:***@127.0.0.1:3306" names no database; add it as the path, e.g. mysql://root@127.0.0.1:3306/populus',
);
test(
  exitsWithConfigError,
  ["--database", "mysql://root:hunter2@127.0.0.1/populus?ssl=true"],
  'database URL "mysql://root:***@127.0.0.1/populus?ssl=true" has unknown parameter "ssl"; the one it takes is socket=<path>',
);
test(
  exitsWithConfigError,
  ["--database", "mysql://root@localhost/populus?socket=mysqld.sock"],
  'database URL "mysql://root@localhost/populus?socket=mysqld.sock": socket must be an absolute path, e.g. socket=/run/mysqld/mysqld.sock',
);
test(
  exitsWithConfigError,
  ["--port", "99999"],
  `option '--port <port>' argument '99999' is invalid. --port must be a whole number from 0 to 65535, got "99999"`,
);
test(
  exitsWithConfigError,
  [],
  `option '--port <port>' value 'abc' from env 'POPULUS_PORT' is invalid. --port must be a whole number from 0 to 65535, got "abc"`,
  { POPULUS_PORT: "abc" },
);
test(exitsWithConfigError, ["--bogus"], "unknown option '--bogus'");
test(exitsWithConfigError, ["--port", "0", "extra"], "too many arguments. Expected 0 arguments but got 1.");
test(
  exitsWithConfigError,
  ["--log-level", "loud"],
  "option '--log-level <level>' argument 'loud' is invalid. Allowed choices are fatal, error, warn, info, debug, trace, silent.",
);
test(
  exitsWithConfigError,
  ["--shutdown-grace", "-1"],
  `option '--shutdown-grace <seconds>' argument '-1' is invalid. --shutdown-grace must be a whole number from 0 to 3600, got "-1"`,
);
test(
  exitsWithConfigError,
  ["--max-lost-attempts", "0"],
  `option '--max-lost-attempts <n>' argument '0' is invalid. --max-lost-attempts must be a whole number from 1 to 1000, got "0"`,
);

test(
  exitsWithConfigError,
  ["--reserve-recheck", "0"],
  `option '--reserve-recheck <seconds>' argument '0' is invalid. --reserve-recheck must be a whole number from 1 to 60, got "0"`,
);
test(
  exitsWithConfigError,
  ["--db-pool-size", "0"],
  `option '--db-pool-size <n>' argument '0' is invalid. --db-pool-size must be a whole number from 1 to 1000, got "0"`,
);
test(
  exitsWithConfigError,
  ["--db-pool-wait", "61"],
  `option '--db-pool-wait <seconds>' argument '61' is invalid. --db-pool-wait must be a whole number from 1 to 60, got "61"`,
);
test(
  exitsWithConfigError,
  ["--sqlite-cache", "1"],
  `option '--sqlite-cache <MiB>' argument '1' is invalid. --sqlite-cache must be a whole number from 2 to 65536, got "1"`,
);

test("an unreachable database → exit 1, one line naming it and the likely cause, password masked", async (t) => {
  const r = await run(["--port", "0", "--database", "mysql://root:hunter2@127.0.0.1:1/x"]);
  t.is(r.code, 1);
  t.is(
    r.stderr,
    "populus-server: cannot open database mysql://root:***@127.0.0.1:1/x: connection refused; is the database server running and is the host/port right?\n",
  );
});

const mysqlTest = testDialects().includes("mysql") ? test : test.skip;
mysqlTest(
  `a MySQL database that does not exist → exit 1, one line saying to create it${testDialects().includes("mysql") ? "" : " (skipped: POPULUS_TEST_DIALECTS excludes mysql)"}`,
  async (t) => {
    const db = await createTestDatabase("mysql");
    t.teardown(() => db.drop());
    const missing = `${db.url}_missing`;
    const r = await run(["--port", "0", "--database", missing]);
    t.is(r.code, 1);
    t.is(r.stderr, `populus-server: cannot open database ${missing}: the database does not exist; create it first (CREATE DATABASE name)\n`);
  },
);

test("a port in use → exit 1, one line saying it is in use", async (t) => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())));
  const { port } = holder.address() as net.AddressInfo;
  const r = await run(["--port", String(port), "--database", "sqlite:populus.db"]);
  t.is(r.code, 1);
  t.is(r.stderr, `populus-server: cannot listen on 127.0.0.1:${port}: the port is already in use; stop the other process or pick another --port\n`);
});

test("--help exits 0 and documents every option with its env var", async (t) => {
  const r = await run(["--help"]);
  t.is(r.code, 0);
  t.is(r.stderr, "");
  t.deepEqual(r.files, []);
  t.regex(r.stdout, /^Usage: populus-server \[options\]\n/);
  const flags = [...r.stdout.matchAll(/^\s+(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1]);
  t.deepEqual(flags, [
    "--host",
    "--port",
    "--database",
    "--log-level",
    "--shutdown-grace",
    "--max-lost-attempts",
    "--event-retention",
    "--reserve-recheck",
    "--tokens-file",
    "--insecure",
    "--tls-cert",
    "--tls-key",
    "--max-watch-streams",
    "--max-watch-streams-total",
    "--db-pool-size",
    "--db-pool-wait",
    "--sqlite-cache",
    "--help",
  ]);
  const text = r.stdout.replace(/\s+/g, " ");
  for (const env of [
    "POPULUS_HOST",
    "POPULUS_PORT",
    "POPULUS_DATABASE_URL",
    "POPULUS_LOG_LEVEL",
    "POPULUS_SHUTDOWN_GRACE",
    "POPULUS_MAX_LOST_ATTEMPTS",
    "POPULUS_EVENT_RETENTION",
    "POPULUS_RESERVE_RECHECK",
    "POPULUS_TOKENS_FILE",
    "POPULUS_INSECURE",
    "POPULUS_TLS_CERT",
    "POPULUS_TLS_KEY",
    "POPULUS_MAX_WATCH_STREAMS",
    "POPULUS_MAX_WATCH_STREAMS_TOTAL",
    "POPULUS_DB_POOL_SIZE",
    "POPULUS_DB_POOL_WAIT",
    "POPULUS_SQLITE_CACHE",
  ]) {
    t.true(text.includes(`env: ${env}`), `--help names ${env}`);
  }
  for (const fallback of ['default: "127.0.0.1"', "default: 50051", 'default: "sqlite:populus.db"', 'default: "info"', "default: 10", "default: 3"]) {
    t.true(text.includes(fallback), `--help shows ${fallback}`);
  }
});
