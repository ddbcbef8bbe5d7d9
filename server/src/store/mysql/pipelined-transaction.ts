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
 * How a round trip's statements travel:
 *
 * - MySQL: as one multi-statement query (mysql2's multipleStatements), executed in order; the first
 *   error stops the rest, and the caller then rolls back. The server answers each statement on its
 *   own, and sends each answer as it is ready.
 * - MariaDB (`compound`): as one anonymous compound statement, `BEGIN NOT ATOMIC ... END`, which
 *   runs its statements in order just the same and stops at the first error, leaving the
 *   transaction open for the caller's ROLLBACK; but answers only the result sets of its reads and
 *   one OK at the end. A one-key refresh's five statements came back as five answers, mostly in
 *   packets of their own, each one more wake-up and read for this server: sent by mysql2 alone,
 *   the compound form took 75-100 µs of the client's CPU against 140-225, and 333-347 µs of
 *   MariaDB's against 373-393; through this server, warm, 460-505 µs of the server's CPU a call
 *   against 495-530. The counts the operation reads ('run') are kept in session
 *   variables right after their statements and read back by one SELECT at the end of the block, as
 *   the block's last result set. A statement that counts the rows of the write before it in SQL
 *   (Statement.readsPreviousCount: the change log's deltas, refresh's SELECT ... INTO before it
 *   drops computed keys) reads @populus_rc instead of ROW_COUNT() (MariaDB's dialect,
 *   previousRowCount), which the write leaves when that statement follows it. Either way such a
 *   statement must go in its write's round trip, which send() checks.
 *
 * A value is a `?` that mysql2 escapes into the text, or, in a statement of a batch of rows or
 * keys, a literal the dialect wrote (sql-literals.ts).
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

export interface PipelinedTransactionOptions {
  /** Send each round trip as one `BEGIN NOT ATOMIC ... END` block (MariaDB only). */
  readonly compound?: boolean;
}

/** The session variable where a write of a compound round trip leaves its count for the statement after it (MariaDB's previousRowCount). */
export const LAST_WRITE_COUNT = "@populus_rc";

const BEGIN: Statement = { sql: "START TRANSACTION", params: [] };
const COMMIT: Statement = { sql: "COMMIT", params: [] };

/** A statement of a round trip: its rows read, its count read, or neither (BEGIN, a held write, COMMIT). */
interface Sent {
  readonly kind: "rows" | "run" | "write";
  readonly statement: Statement;
}

export class PipelinedTransaction implements AsyncExecutor {
  private begun = false;
  /** COMMIT went with the operation's last statements (together's `last`). */
  private committed = false;
  /** Writes not sent yet, in order. */
  private readonly held: Statement[] = [];
  private readonly compound: boolean;

  constructor(
    private readonly connection: QueryConnection,
    options: PipelinedTransactionOptions = {},
  ) {
    this.compound = options.compound ?? false;
  }

  async rows(s: Statement): Promise<unknown[]> {
    if (!this.begun && this.held.length === 0 && s.perRow === undefined && isPlainRead(s.sql)) return (await this.query([s])) as unknown[];
    if (s.perRow === undefined) return (await this.send([{ kind: "rows", statement: s }]))[0] as unknown[];
    // A per-row read finds at most one row per run.
    const found: unknown[] = [];
    for (const one of runsOf(s)) {
      const [row] = (await this.send([{ kind: "rows", statement: one }]))[0] as unknown[];
      if (row !== undefined) found.push(row);
    }
    return found;
  }

  async run(s: Statement): Promise<number> {
    let changed = 0;
    for (const one of runsOf(s)) changed += (await this.send([{ kind: "run", statement: one }]))[0] as number;
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
    if (!this.begun && this.held.length === 0 && parts.every((p) => p.kind === "rows" && isPlainRead(p.statement.sql))) {
      const answered = await this.query(parts.map((p) => p.statement));
      return parts.length === 1 ? [answered] : (answered as unknown[]);
    }
    const results = await this.send(parts, last);
    if (last) this.committed = true;
    return results;
  }

  /** Sends the held writes and COMMIT; a transaction that never began (it only read, or did nothing) or already committed has nothing to commit. */
  async commit(): Promise<void> {
    if (!this.committed && (this.begun || this.held.length > 0)) await this.send([], true);
  }

  /** Rolls back whatever began; harmless when nothing did, and quiet on a connection already lost. */
  async rollback(): Promise<void> {
    this.held.length = 0;
    await this.query([{ sql: "ROLLBACK", params: [] }]).catch(() => undefined);
  }

  /**
   * `parts` after START TRANSACTION (first time) and the held writes, then COMMIT if `commit`, in
   * one round trip; answers each part's rows ('rows') or count ('run').
   */
  private async send(parts: readonly Sent[], commit = false): Promise<unknown[]> {
    const batch: Sent[] = [];
    if (!this.begun) batch.push({ kind: "write", statement: BEGIN });
    for (const statement of this.held) batch.push({ kind: "write", statement });
    batch.push(...parts);
    if (commit) batch.push({ kind: "write", statement: COMMIT });
    this.held.length = 0;
    this.begun = true;
    batch.forEach(({ statement }, i) => {
      const before = batch[i - 1]?.statement;
      // Its write went in an earlier round trip: on MariaDB it would read another write's count.
      if (statement.readsPreviousCount && (before === undefined || before === BEGIN)) {
        throw new Error("a statement that counts the rows of the write before it must go in that write's round trip");
      }
    });
    return this.compound && batch.length > 1 ? this.sendCompound(batch) : this.sendStatements(batch);
  }

  /** The batch as a multi-statement query: one result per statement. */
  private async sendStatements(batch: readonly Sent[]): Promise<unknown[]> {
    const results = await this.query(batch.map((s) => s.statement));
    // One statement answers its result; several answer one result per statement.
    const each = batch.length === 1 ? [results] : (results as unknown[]);
    const answers: unknown[] = [];
    batch.forEach((s, i) => {
      if (s.kind === "rows") answers.push(each[i]);
      else if (s.kind === "run") answers.push(affected(each[i]));
    });
    return answers;
  }

  /** The batch as one compound statement: the result sets of its reads, then its counts in one row, then the block's OK. */
  private async sendCompound(batch: readonly Sent[]): Promise<unknown[]> {
    // The block's text in pieces that one join() writes out flat: a 1,000-key INSERT's text is copied
    // once here, where a template around the joined statements made a tree that mysql2 flattened again.
    const texts: string[] = ["BEGIN NOT ATOMIC\n"];
    const values: Param[] = [];
    const counted: string[] = [];
    let resultSets = 0;
    batch.forEach(({ kind, statement }, i) => {
      texts.push(statement.sql, ";\n");
      values.push(...statement.params);
      if (kind === "rows") resultSets++;
      // The counts this write must leave, read before the next statement replaces ROW_COUNT(): its
      // own when the operation reads it, and the one the next statement reads in SQL.
      const keep: string[] = [];
      if (kind === "run") {
        keep.push(`@populus_n${counted.length}`);
        counted.push(keep[0] as string);
      }
      if (batch[i + 1]?.statement.readsPreviousCount) keep.push(LAST_WRITE_COUNT);
      if (keep.length > 0) texts.push(`SELECT ${keep.map(() => "ROW_COUNT()").join(", ")} INTO ${keep.join(", ")}`, ";\n");
    });
    if (counted.length > 0) {
      texts.push(`SELECT ${counted.join(", ")}`, ";\n");
      resultSets++;
    }
    texts.push("END");
    const results = await this.query([{ sql: texts.join(""), params: values }]);
    // mysql2 answers one result alone (the block's OK) and several as a list, the OK last. A list of
    // another length is this module's mistake, found after the block ran (its COMMIT too, if it
    // had one): the call fails as a server fault.
    const sets = resultSets === 0 ? [] : (results as unknown[]);
    if (resultSets > 0 && sets.length !== resultSets + 1) {
      throw new Error(`a compound statement answered ${sets.length} results for ${resultSets} result sets and its OK`);
    }
    const countRow = counted.length > 0 ? Object.values((sets[resultSets - 1] as Record<string, unknown>[])[0] ?? {}) : [];
    const answers: unknown[] = [];
    let set = 0;
    let count = 0;
    for (const { kind } of batch) {
      if (kind === "rows") answers.push(sets[set++]);
      else if (kind === "run") answers.push(Number(countRow[count++] ?? 0));
    }
    return answers;
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
