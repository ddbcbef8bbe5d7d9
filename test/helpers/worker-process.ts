/**
 * The real populus-worker CLI as a process (node --import tsx worker/dist/main.js, so that
 * TypeScript pipeline modules load), with its output collected and its JSON log lines parsed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

export const WORKER_MAIN = fileURLToPath(new URL("../../worker/dist/main.js", import.meta.url));

export interface WorkerExit {
  readonly pid: number | undefined;
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout's JSON log lines. */
  readonly logs: Record<string, unknown>[];
}

export interface WorkerProcess {
  readonly child: ChildProcess;
  /** Rejects if the worker runs longer than `limitMs`. */
  readonly exited: Promise<WorkerExit>;
}

/** Runs populus-worker with `args`. */
export function runWorker(args: readonly string[], env: NodeJS.ProcessEnv = {}, limitMs = 60_000): WorkerProcess {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER_MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<WorkerExit>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`populus-worker still running after ${limitMs / 1000} s; stdout: ${stdout}; stderr: ${stderr}`)), limitMs);
    void (once(child, "exit") as Promise<[number | null]>).then(([code]) => {
      clearTimeout(timer);
      const logs = stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ pid: child.pid, code, stdout, stderr, logs });
    });
  });
  // Handled here too: a test that failed before awaiting it must not turn its timeout into an unhandled rejection.
  exited.catch(() => undefined);
  return { child, exited };
}
