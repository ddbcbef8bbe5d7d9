/**
 * `npm run demo`: populates the example pipeline (pipeline.ts) with
 * `processes: 4` against the server at POPULUS_URL (else
 * http://127.0.0.1:50051). When no server answers there, it starts one
 * (`server/dist/main.js`) on the embedded SQLite default, in a temporary
 * directory, on a free port, and stops it at the end.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const SERVER_MAIN = fileURLToPath(new URL("../server/dist/main.js", import.meta.url));

/** True when a Populus server answers at `url` (a Connect JSON call to ListTables, 1 s timeout). */
async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url.replace(/\/+$/, "")}/populus.v1.JobService/ListTables`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
      signal: AbortSignal.timeout(1000),
    });
    return res.ok;
  } catch {
    return false;
  }
}

/** Starts a server on a temporary SQLite file and a free port; resolves with its URL once it listens. */
async function startServer(dir: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [SERVER_MAIN, "--port", "0", "--database", `sqlite:${join(dir, "populus.db")}`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === "listening" && typeof entry.port === "number") resolve(entry.port);
      } catch {
        // not a log line
      }
    });
    child.once("exit", (code) => reject(new Error(`populus-server exited with ${code} before listening`)));
  });
  return { url: `http://127.0.0.1:${port}`, child };
}

const wanted = process.env.POPULUS_URL ?? "http://127.0.0.1:50051";
let server: { url: string; child: ChildProcess } | undefined;
let dir: string | undefined;
if (!(await answers(wanted))) {
  dir = mkdtempSync(join(tmpdir(), "populus-demo-"));
  server = await startServer(dir);
  console.log(`no server answered at ${wanted}; started one at ${server.url} on ${join(dir, "populus.db")}`);
  // Read by connect() when pipeline.ts is imported below.
  process.env.POPULUS_URL = server.url;
} else {
  console.log(`using the server at ${wanted}`);
}

try {
  const { ProcessedData } = await import("./pipeline.js");
  const started = Date.now();
  const result = await ProcessedData.populate({ reserveJobs: true, processes: 4, displayProgress: true });
  console.log(`populate: ${result.successCount} keys computed, ${result.errorList.length} errors, in ${Date.now() - started} ms`);
  console.log("progress:", await ProcessedData.jobs.progress());
  const rows = (await ProcessedData.fetch({ restriction: { subject_id: 1 } })).sort((a, b) => a.key.session.localeCompare(b.key.session));
  console.log(`subject 1: ${rows.map((r) => `${r.key.session} → ${Number(r.result.mean).toFixed(3)}`).join(", ")}`);
} finally {
  if (server !== undefined) {
    server.child.kill("SIGTERM");
    await once(server.child, "exit");
  }
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}
