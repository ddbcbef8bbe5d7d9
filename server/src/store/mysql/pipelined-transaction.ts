/**
 * A MySQL transaction that spends as few round trips as its operation allows. Each round trip
 * costs far more than the statement it carries here (a loopback write wakes the database's thread
 * on the other core: 50 µs of the server's CPU per statement in a profile, besides the wait), so:
 *
 * - START TRANSACTION goes with the first statement;
 * - a `write` (a statement whose count the operation does not read: a change-log row, a lease
 *   update) waits and goes with the next statement, or with COMMIT.
 *
 * They travel as one multi-statement query (mysql2's multipleStatements), executed in order; the
 * first error stops the rest, and the caller then rolls back. Every value is still a bound `?`.
 */
import type { AsyncExecutor, Param, Statement } from "../operations/operation.js";

/** The part of a mysql2 (callback) connection this needs. */
export interface QueryConnection {
  query(options: { sql: string; values: Param[] }, callback: (err: Error | null, results: unknown) => void): void;
}

const BEGIN: Statement = { sql: "START TRANSACTION", params: [] };
const COMMIT: Statement = { sql: "COMMIT", params: [] };

export class PipelinedTransaction implements AsyncExecutor {
  private begun = false;
  /** Writes not sent yet, in order. */
  private readonly held: Statement[] = [];

  constructor(private readonly connection: QueryConnection) {}

  async rows(s: Statement): Promise<unknown[]> {
    if (s.perRow === undefined) return (await this.send(s)) as unknown[];
    const found: unknown[] = [];
    for (let at = 0; at < s.params.length; at += s.perRow) {
      const [row] = (await this.send({ sql: s.sql, params: s.params.slice(at, at + s.perRow) })) as unknown[];
      if (row !== undefined) found.push(row);
    }
    return found;
  }

  async run(s: Statement): Promise<number> {
    if (s.perRow === undefined) return affected(await this.send(s));
    let changed = 0;
    for (let at = 0; at < s.params.length; at += s.perRow) changed += affected(await this.send({ sql: s.sql, params: s.params.slice(at, at + s.perRow) }));
    return changed;
  }

  async write(s: Statement): Promise<void> {
    if (s.perRow === undefined) this.held.push(s);
    else await this.run(s);
  }

  /** Sends the held writes and COMMIT; a transaction with no statement at all has nothing to commit. */
  async commit(): Promise<void> {
    if (this.begun || this.held.length > 0) await this.send(COMMIT);
  }

  /** Rolls back whatever began; harmless when nothing did, and quiet on a connection already lost. */
  async rollback(): Promise<void> {
    this.held.length = 0;
    await this.query([{ sql: "ROLLBACK", params: [] }]).catch(() => undefined);
  }

  /** `last` after START TRANSACTION (first time) and the held writes, in one round trip; answers `last`'s result. */
  private async send(last: Statement): Promise<unknown> {
    const batch = this.begun ? [...this.held, last] : [BEGIN, ...this.held, last];
    this.held.length = 0;
    this.begun = true;
    const results = await this.query(batch);
    // One statement answers its result; several answer one result per statement.
    return batch.length === 1 ? results : (results as unknown[])[batch.length - 1];
  }

  private query(batch: readonly Statement[]): Promise<unknown> {
    const sql = batch.length === 1 ? (batch[0] as Statement).sql : batch.map((s) => s.sql).join(";\n");
    const values = batch.length === 1 ? [...(batch[0] as Statement).params] : batch.flatMap((s) => s.params);
    return new Promise((resolve, reject) => this.connection.query({ sql, values }, (err, results) => (err ? reject(err) : resolve(results))));
  }
}

function affected(result: unknown): number {
  return (result as { affectedRows?: number }).affectedRows ?? 0;
}
