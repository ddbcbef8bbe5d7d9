/**
 * A MariaDB server owned by one test, to be SIGKILLed and started again: its own data directory
 * (made by `mariadb-install-db --no-defaults`), port and socket, no Docker needed. It needs the
 * MariaDB server binaries (Debian's mariadb-server, which .ci/run's machine has).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import mysql from "mysql2/promise";

const INSTALL_DB = "/usr/bin/mariadb-install-db";
const MARIADBD = "/usr/sbin/mariadbd";

/** Why an owned MariaDB cannot run here, or null when it can. */
export function ownedMariadbUnavailable(): string | null {
  for (const binary of [INSTALL_DB, MARIADBD]) if (!existsSync(binary)) return `${binary} is not installed (Debian: apt-get install mariadb-server)`;
  return null;
}

export interface OwnedMariadb {
  readonly port: number;
  /** mysql://root@127.0.0.1:PORT, no database. */
  readonly url: string;
  /** SIGKILL: no shutdown, InnoDB recovers at the next start. */
  kill(): Promise<void>;
  /** Starts mariadbd again on the same data directory and port; resolves once it answers. */
  start(): Promise<void>;
  /** Kills it and removes its data directory. */
  remove(): Promise<void>;
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Installs a fresh data directory and starts mariadbd on a free port. */
export async function startOwnedMariadb(): Promise<OwnedMariadb> {
  const dir = mkdtempSync(join(tmpdir(), "populus-mariadb-"));
  const data = join(dir, "data");
  // root logs in without a password over TCP (normal authentication, empty password), as on 3306.
  await promisify(execFile)(INSTALL_DB, ["--no-defaults", `--datadir=${data}`, "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"]);
  const port = await freePort();
  const url = `mysql://root@127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  const start = async () => {
    const errorLog = join(dir, "error.log");
    child = spawn(
      MARIADBD,
      [
        "--no-defaults",
        `--datadir=${data}`,
        "--user=root",
        `--port=${port}`,
        "--bind-address=127.0.0.1",
        `--socket=${join(dir, "mariadb.sock")}`,
        `--pid-file=${join(dir, "mariadb.pid")}`,
        `--log-error=${errorLog}`,
        "--innodb-buffer-pool-size=64M",
      ],
      { stdio: "ignore" },
    );
    const exited = once(child, "exit");
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const c = await mysql.createConnection({ uri: url, connectTimeout: 1000 });
        await c.end();
        return;
      } catch (err) {
        if (child.exitCode !== null) throw new Error(`mariadbd exited with ${child.exitCode}: ${readLog(errorLog)}`);
        if (Date.now() > deadline) throw new Error(`mariadbd did not answer on port ${port} within 30 s: ${String(err)}; ${readLog(errorLog)}`);
        await Promise.race([exited, new Promise((r) => setTimeout(r, 100))]);
      }
    }
  };

  const kill = async () => {
    const running = child;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, "exit");
    running.kill("SIGKILL");
    await exited;
  };

  await start();
  return {
    port,
    url,
    kill,
    start,
    async remove() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readLog(path: string): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-5).join(" | ");
  } catch {
    return "(no error log)";
  }
}
