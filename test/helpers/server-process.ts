/**
 * Real populus-server processes for tests: started on port 0, ready when the
 * "listening" log line names the port, stopped with SIGTERM (and asserted to
 * exit) or killed with SIGKILL.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

/** The built server entry point (npm test builds first). */
export const SERVER_MAIN = fileURLToPath(new URL("../../server/dist/main.js", import.meta.url));

export interface ServerProcess {
  readonly process: ChildProcess;
  readonly port: number;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** Every stdout line so far (pino JSON). */
  readonly logs: string[];
  /** SIGTERM, then resolves with the exit code (rejects if it does not exit within 15 s). */
  stop(): Promise<number | null>;
  /** SIGKILL, then resolves once the process is gone. */
  kill(): Promise<void>;
}

export interface StartOptions {
  /** The --database URL; undefined starts the server without the flag (its default, sqlite:populus.db in cwd). */
  readonly database: string | undefined;
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** SERVER_CPU_PROF_DIR=dir: each server started here writes a V8 CPU profile into dir when it stops (bench profiling); SERVER_NODE_FLAGS: more node flags. */
const SERVER_NODE_ARGS = [
  ...(process.env.SERVER_CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.SERVER_CPU_PROF_DIR}`] : []),
  // SERVER_NODE_FLAGS="--flag ...": node flags for every server started here (bench experiments).
  ...(process.env.SERVER_NODE_FLAGS?.split(/\s+/).filter((f) => f !== "") ?? []),
];

/**
 * Servers still running when this process exits, even by an uncaught error, are killed with it: an
 * orphaned server keeps polling its database and skews every measurement after it on the machine.
 */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts a server and waits until it listens (rejects with its stderr if it exits first). */
export async function startServer(options: StartOptions): Promise<ServerProcess> {
  const databaseArgs = options.database === undefined ? [] : ["--database", options.database];
  const child = spawn(process.execPath, [...SERVER_NODE_ARGS, SERVER_MAIN, "--port", "0", ...databaseArgs, ...(options.args ?? [])], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  const logs: string[] = [];
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  // "close", not "exit": it comes once stdout is read to its end, so the last log lines (the
  // server's "stopped") are in `logs` when stop() resolves. After "exit" they could still be in
  // the pipe: server-start's long-poll test once found no "stopped" under a loaded machine.
  const exited = once(child, "close");
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === "listening" && typeof entry.port === "number") resolve(entry.port);
      } catch {
        // not JSON: kept in logs
      }
    });
    void exited.then(([code]) => reject(new Error(`server exited with ${code} before listening: ${stderr.trim()}`)));
  });
  return {
    process: child,
    port,
    url: `http://127.0.0.1:${port}`,
    logs,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const [code] = (await exited) as [number | null];
      clearTimeout(timer);
      return code;
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Runs the server to completion (for bad-configuration tests): exit code, stdout, stderr. */
export async function runServerToExit(args: readonly string[], env: NodeJS.ProcessEnv = {}, cwd?: string) {
  const child = spawn(process.execPath, [SERVER_MAIN, ...args], { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}
