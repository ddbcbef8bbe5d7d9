/**
 * Chaos, on each dialect: two server replicas on one database (on SQLite, two
 * server processes on one file), three SDK
 * worker processes spread over them populating 5,000 keys with 2 s leases,
 * while the test SIGKILLs a random worker about every second (starting a
 * replacement at once) and restarts one replica once, also with SIGKILL.
 *
 * At the end: every key is in the target exactly once, each committed result
 * was produced by a real make call of that key, no result committed before
 * the halfway mark changed afterwards (nothing was overwritten), and no job is
 * left reserved, pending or failed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import test from "ava";
import { createTestDatabase, testDialects } from "./helpers/databases.js";
import { allTargets, counts, idOf, jobsClient, keys, sleep } from "./helpers/jobs-client.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

const WORKER = fileURLToPath(new URL("./fixtures/chaos-worker.js", import.meta.url));
const KEYS = 5000;
const WORKERS = 3;
const TABLE = "Chaos";

/**
 * One of the test's own reads during the chaos, asked again while the server answers UNAVAILABLE,
 * as the SDK asks again: on SQLite a replica killed in the middle of a commit leaves the WAL to be
 * recovered, and the other replica's reads are busy meanwhile (SQLITE_BUSY_RECOVERY).
 */
async function retryingUnavailable<T>(read: () => Promise<T>, log: (line: string) => void): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.Unavailable) || attempt >= 40) throw err;
      log(`the test's own read was answered UNAVAILABLE (${err.rawMessage}); asking again`);
      await sleep(250);
    }
  }
}

/** Committed results by key: the nonce of the make that produced each. */
async function committed(url: string): Promise<Map<number, string>> {
  const rows = await allTargets(jobsClient(url), TABLE);
  return new Map(rows.map((r) => [idOf(r.key), String(r.result?.nonce)]));
}

for (const dialect of testDialects()) {
  test(`${dialect}: chaos: SIGKILLed workers and a restarted replica lose nothing and commit every key exactly once`, async (t) => {
    t.timeout(180_000);
    const db = await createTestDatabase(dialect);
    const dir = mkdtempSync(join(tmpdir(), "populus-chaos-"));
    const calls = join(dir, "calls");
    writeFileSync(calls, "");
    // A SIGKILLed worker charges a lost attempt to every key it held (its batch and the one reserved
    // ahead), and --max-lost-attempts (default 3) then makes a key that was held by three killed
    // workers an error. Killing a worker every second is far past what that limit is for (a make
    // that kills its worker); here every key must end committed, so the limit is out of the way.
    const args = ["--max-lost-attempts", "1000"];
    const replicas: ServerProcess[] = [await startServer({ database: db.url, args }), await startServer({ database: db.url, args })];
    const everyReplica = [...replicas];
    const workers = new Set<ChildProcess>();
    const exits: (number | null)[] = [];
    let kills = 0;
    try {
      const client = jobsClient(replicas[0]!.url);
      for (let from = 0; from < KEYS; from += 1000) await client.refresh({ table: TABLE, keys: keys(from, from + 1000) });

      const urls = replicas.map((r) => r.url);
      const startWorker = (n: number) => {
        const child = spawn(process.execPath, [WORKER, urls[n % 2]!, calls], { stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        workers.add(child);
        child.once("exit", (code, signal) => {
          workers.delete(child);
          if (signal === null) {
            exits.push(code);
            if (code !== 0) t.log(`worker ${child.pid} exited ${code}: ${stderr.trim().slice(0, 2000)}`);
          }
        });
      };
      let started = 0;
      for (; started < WORKERS; started++) startWorker(started);

      const read = <T>(ask: () => Promise<T>) => retryingUnavailable(ask, (line) => t.log(line));
      let halfway: Map<number, string> | undefined;
      let restarted = false;
      const deadline = Date.now() + 150_000;
      for (;;) {
        const now = await read(() => counts(client, TABLE));
        const done = now.target;
        if (done >= KEYS) break;
        if (kills % 5 === 0) t.log(`${done} keys committed, ${kills} kills so far`);
        if (Date.now() > deadline) throw new Error(`only ${done} of ${KEYS} keys committed in time: ${JSON.stringify(now)}`);
        if (halfway === undefined && done >= KEYS / 2) halfway = await read(() => committed(urls[0]!));
        if (!restarted && done >= KEYS / 4) {
          // Replica 1 dies hard and comes back on the same port; its workers retry meanwhile.
          restarted = true;
          const port = replicas[1]!.port;
          await replicas[1]!.kill();
          await sleep(500);
          replicas[1] = await startServer({ database: db.url, args: [...args, "--port", String(port)] });
          everyReplica.push(replicas[1]);
          t.log(`replica restarted at ${done} keys`);
        }
        await sleep(700 + Math.random() * 600);
        const victims = [...workers];
        const victim = victims[Math.floor(Math.random() * victims.length)];
        if (victim !== undefined && (await read(() => counts(client, TABLE))).target < KEYS) {
          victim.kill("SIGKILL");
          kills++;
          startWorker(started++);
        }
      }
      // The last workers exit on their own once nothing remains.
      while (workers.size > 0) await sleep(100);
      t.log(`${kills} workers SIGKILLed, ${started} started`);

      const results = await committed(urls[0]!);
      t.is(results.size, KEYS, "every key committed");
      t.deepEqual(
        [...results.keys()].sort((a, b) => a - b),
        Array.from({ length: KEYS }, (_, i) => i),
      );
      const made = new Set(readFileSync(calls, "utf8").trim().split("\n"));
      const strays = [...results].filter(([id, nonce]) => !made.has(`${id} ${nonce}`));
      t.deepEqual(strays, [], "each committed result came from a make call of its key");
      t.log(`${made.size} make calls for ${KEYS} keys (${made.size - KEYS} repeated after kills)`);
      t.truthy(halfway, "a halfway snapshot was taken");
      const overwritten = [...(halfway ?? [])].filter(([id, nonce]) => results.get(id) !== nonce);
      t.deepEqual(overwritten, [], "no result committed by halfway changed afterwards");
      t.like(await counts(client, TABLE), { pending: 0, reserved: 0, error: 0, target: KEYS });
      t.true(
        exits.every((code) => code === 0),
        `workers that were not killed exited 0: ${JSON.stringify(exits)}`,
      );
    } catch (err) {
      // What every replica, the killed one included, logged as warnings and errors (the cause of an
      // INTERNAL or UNAVAILABLE answer) goes with the failure.
      for (const [i, r] of everyReplica.entries()) {
        for (const line of r.logs.filter((l) => /"level":(40|50|60)/.test(l))) t.log(`replica ${i}: ${line.slice(0, 2000)}`);
      }
      throw err;
    } finally {
      for (const w of workers) w.kill("SIGKILL");
      await Promise.all([...workers].map((w) => once(w, "exit")));
      await Promise.all(replicas.map((r) => r.kill()));
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
