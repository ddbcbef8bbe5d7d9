/**
 * A MySQL transaction that spends as few round trips as its operation allows. Each round trip
 * costs far more than the statement it carries here (a loopback write wakes the database's thread
 * on the other core: 50 µs of the server's CPU per statement in a profile, besides the wait), so:
 *
 * - START TRANSACTION goes with the first statement that writes or locks. Reads before it go
 *   alone, in autocommit: at READ COMMITTED each statement reads the latest commits either way, and
 *   an operation that only reads (a refresh that finds nothing to do) then needs no COMMIT at all;
 * - a `write` (a statement whose count the operation does not read: a change-log row, a lease
 *   update; a per-row one as its runs) waits and goes with the next statement, or with COMMIT;
 * - the statements of a `together` step (rowsAndRows, lastTogether) go in one round trip, and
 *   COMMIT goes with the operation's last ones (lastTogether): a one-key refresh is one round trip.
 *
 * They travel as one multi-statement query (mysql2's multipleStatements), executed in order; the
 * first error stops the rest, and the caller then rolls back. A value is a `?` that mysql2 escapes
 * into the text, or, in a statement of a batch of rows or keys, a literal the dialect wrote (sql-literals.ts).
 *
 * Behind a proxy that splits reads from writes (ProxySQL, MaxScale), a plain read in autocommit may
 * be routed to a replica and read behind the primary: point Populus at the primary itself, or at a
 * proxy route that does not split.
 */
import { type AsyncExecutor, type Param, type Part, runsOf, type Statement } from "../operations/operation.js";

/** The part of a mysql2 (callback) connection this needs. */
export interface QueryConnection {
  query(options: { sql: string; values: Param[] }, callback: (err: Error | null, results: unknown) => void): void;
}

const BEGIN: Statement = { sql: "START TRANSACTION", params: [] };
const COMMIT: Statement = { sql: "COMMIT", params: [] };

export class PipelinedTransaction implements AsyncExecutor {
  private begun = false;
  /** COMMIT went with the operation's last statements (together's `last`). */
  private committed = false;
  /** Writes not sent yet, in order. */
  private readonly held: Statement[] = [];

  constructor(private readonly connection: QueryConnection) {}

  async rows(s: Statement): Promise<unknown[]> {
    if (!this.begun && this.held.length === 0 && s.perRow === undefined && isPlainRead(s.sql)) return (await this.query([s])) as unknown[];
    if (s.perRow === undefined) return (await this.send(s))[0] as unknown[];
    // A per-row read finds at most one row per run.
    const found: unknown[] = [];
    for (const one of runsOf(s)) {
      const [row] = (await this.send(one))[0] as unknown[];
      if (row !== undefined) found.push(row);
    }
    return found;
  }

  async run(s: Statement): Promise<number> {
    let changed = 0;
    for (const one of runsOf(s)) changed += affected((await this.send(one))[0]);
    return changed;
  }

  async write(s: Statement): Promise<void> {
    this.held.push(...runsOf(s));
  }

  /** `last`: the operation ends with these statements, so COMMIT goes with them (commit() then has nothing left to send). */
  async together(parts: readonly Part[], last = false): Promise<unknown[]> {
    if (parts.some((p) => p.statement.perRow !== undefined)) {
      const results: unknown[] = [];
      for (const p of parts) results.push(p.kind === "rows" ? await this.rows(p.statement) : await this.run(p.statement));
      return results;
    }
    const statements = parts.map((p) => p.statement);
    if (!this.begun && this.held.length === 0 && parts.every((p) => p.kind === "rows" && isPlainRead(p.statement.sql))) {
      const answered = await this.query(statements);
      return statements.length === 1 ? [answered] : (answered as unknown[]);
    }
    const results = last ? (await this.send(...statements, COMMIT)).slice(0, -1) : await this.send(...statements);
    if (last) this.committed = true;
    return results.map((r, i) => (parts[i]?.kind === "run" ? affected(r) : r));
  }

  /** Sends the held writes and COMMIT; a transaction that never began (it only read, or did nothing) or already committed has nothing to commit. */
  async commit(): Promise<void> {
    if (!this.committed && (this.begun || this.held.length > 0)) await this.send(COMMIT);
  }

  /** Rolls back whatever began; harmless when nothing did, and quiet on a connection already lost. */
  async rollback(): Promise<void> {
    this.held.length = 0;
    await this.query([{ sql: "ROLLBACK", params: [] }]).catch(() => undefined);
  }

  /** `statements` after START TRANSACTION (first time) and the held writes, in one round trip; answers the results of `statements`. */
  private async send(...statements: Statement[]): Promise<unknown[]> {
    const batch = this.begun ? [...this.held, ...statements] : [BEGIN, ...this.held, ...statements];
    this.held.length = 0;
    this.begun = true;
    const results = await this.query(batch);
    // One statement answers its result; several answer one result per statement.
    return batch.length === 1 ? [results] : (results as unknown[]).slice(batch.length - statements.length);
  }

  private query(batch: readonly Statement[]): Promise<unknown> {
    const sql = batch.map((s) => s.sql).join(";\n");
    const values = batch.flatMap((s) => s.params);
    return new Promise((resolve, reject) => this.connection.query({ sql, values }, (err, results) => (err ? reject(err) : resolve(results))));
  }
}

/** A SELECT that takes no locks: it reads the same in autocommit as inside a READ COMMITTED transaction. */
function isPlainRead(sql: string): boolean {
  return /^\s*SELECT\b/i.test(sql) && !/\bFOR\s+UPDATE\b|\bLOCK\s+IN\s+SHARE\s+MODE\b|\bFOR\s+SHARE\b/i.test(sql);
}

function affected(result: unknown): number {
  return (result as { affectedRows?: number }).affectedRows ?? 0;
}
