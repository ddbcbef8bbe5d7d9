/**
 * What the bench's scenarios (scenarios.ts) read of processes and of MariaDB's own counters: a
 * process's CPU from /proc, and around a drain, MariaDB's CPU and the redo log InnoDB wrote, once
 * the purge of earlier work is done.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import mysql from "mysql2/promise";

/** A process's CPU so far, seconds, from /proc (clock ticks of 10 ms: read over enough work that they do not matter). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command; in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * The first mariadbd process's pid, or undefined (none on this machine, or not readable). It is
 * taken to be the server behind the bench's database URL: with another MariaDB on the machine (a
 * second instance, a container) the figures read from it would be some other server's.
 */
export function mariadbdPid(): number | undefined {
  try {
    const pid = Number(execFileSync("pgrep", ["-x", "mariadbd"], { encoding: "utf8" }).trim().split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** MariaDB's counters at one moment (MariadbCounters.read). */
export interface CounterReading {
  readonly cpuSeconds: number;
  readonly redoBytes: number;
}

/** What the database did per job between two readings: its process's CPU (µs) and the redo log it wrote (bytes). */
export interface DatabaseWork {
  readonly cpuUs: number;
  readonly redoBytes: number;
}

/** Longest wait for InnoDB's purge to catch up before a reading, ms. */
const PURGE_WAIT_MS = 30_000;

/**
 * MariaDB's CPU (/proc) and the bytes InnoDB wrote to its redo log (Innodb_os_log_written), which
 * grow with the row work of each job. A reading first waits until InnoDB's purge has caught up
 * (its history list nearly empty): a drain's DELETEs and the old row versions of its UPDATEs are
 * purged in the background after they commit, and that work, which costs CPU and redo too, would
 * otherwise fall into the next reading's window, charged to whatever ran next. Global counters:
 * nothing else may run on the database meanwhile (the bench runs alone).
 */
export class MariadbCounters {
  private constructor(
    private readonly connection: mysql.Connection,
    private readonly pid: number,
  ) {}

  /** Counters of the MariaDB behind `databaseUrl`, or undefined where its process cannot be read (none on this machine). */
  static async open(databaseUrl: string): Promise<MariadbCounters | undefined> {
    const pid = mariadbdPid();
    if (pid === undefined) return undefined;
    return new MariadbCounters(await mysql.createConnection({ uri: databaseUrl }), pid);
  }

  /** The counters once the purge has caught up: pass to `per`. */
  async read(): Promise<CounterReading> {
    await this.purged();
    return { cpuSeconds: cpuSeconds(this.pid), redoBytes: await this.redoBytes() };
  }

  /** The work since `before` (a read()), per job of `jobs`. */
  async per(before: CounterReading, jobs: number): Promise<DatabaseWork> {
    const after = await this.read();
    return { cpuUs: ((after.cpuSeconds - before.cpuSeconds) * 1e6) / jobs, redoBytes: (after.redoBytes - before.redoBytes) / jobs };
  }

  /** The redo log InnoDB has written so far, bytes (no wait for the purge). */
  async redoBytes(): Promise<number> {
    return this.status("Innodb_os_log_written");
  }

  close(): Promise<void> {
    return this.connection.end();
  }

  private async status(name: string): Promise<number> {
    const [rows] = await this.connection.query("SHOW GLOBAL STATUS LIKE ?", [name]);
    const value = Number((rows as { Value: string }[])[0]?.Value);
    if (!Number.isFinite(value)) throw new Error(`MariaDB reports no ${name}`);
    return value;
  }

  /** Waits until InnoDB's history list is short (its purge has caught up), at most PURGE_WAIT_MS. */
  private async purged(): Promise<void> {
    const until = performance.now() + PURGE_WAIT_MS;
    while ((await this.status("Innodb_history_list_length")) > 100 && performance.now() < until) await new Promise((r) => setTimeout(r, 50));
  }
}
