/**
 * Operations are written once for both dialects, as generators in the manner of graphile-worker's
 * src/sql/: an operation yields each statement it runs and receives its result, so one flow drives
 * better-sqlite3 (synchronous, runSync inside the caller's transaction) and mysql2 (a round trip
 * per statement, runAsync). A step is one statement over a batch, never one per job: a
 * generator's resume costs far less than the statement it carries, so the per-job path costs
 * what it did when each dialect spelled its flows out.
 */

export type Param = string | number | boolean | null;

/** Keys per batch of an operation that takes keys: ~1,000 keeps a multi-row INSERT far below max_allowed_packet. */
export const KEY_CHUNK = 1000;

/** A statement and its parameters. */
export interface Statement {
  readonly sql: string;
  readonly params: readonly Param[];
  /**
   * Set: `sql` is a one-row statement run once per `perRow` parameters, prepared once (SQLite's
   * per-key form, where a prepared run costs microseconds and no round trip). A read in this form
   * returns at most one row per run (a lookup by a unique key).
   */
  readonly perRow?: number;
  /**
   * Set: the statement reads the count of the write just before it in SQL (the dialect's
   * previousRowCount), so it must go in that write's round trip (pipelined-transaction.ts).
   */
  readonly readsPreviousCount?: true;
}

/**
 * What an operation yields: read rows, write and count the affected rows, or write without
 * reading the count. A `write` may be sent later, in order and in the same transaction: with the
 * operation's next statement or its commit, in one round trip (mysql-store.ts).
 */
export type Step =
  | { readonly kind: "rows" | "run" | "write"; readonly statement: Statement }
  /**
   * Statements that do not depend on each other's results, each read or counted. `last`: the
   * operation's last statements, which the executor may send with its commit (lastTogether).
   */
  | { readonly kind: "together"; readonly parts: readonly Part[]; readonly last?: boolean };

/** A statement of a `together` step: its rows are read, or the rows it changes counted. */
export interface Part {
  readonly kind: "rows" | "run";
  readonly statement: Statement;
}

/** An operation: yields steps, receives their results, returns its answer. */
export type Operation<T> = Generator<Step, T, unknown>;

/** The rows a statement reads (each run's row, in order, for a per-row statement). */
export function* rows<R>(statement: Statement): Operation<R[]> {
  return (yield { kind: "rows", statement }) as R[];
}

/** The rows a statement changes (summed over runs for a per-row statement). */
export function* run(statement: Statement): Operation<number> {
  return (yield { kind: "run", statement }) as number;
}

/** A write whose count the operation does not need: the executor may send it with the next statement. */
export function* write(statement: Statement): Operation<void> {
  yield { kind: "write", statement };
}

/**
 * Statements that do not depend on each other's results, in order, in one round trip where the
 * driver pipelines (mysql2): answers each one's rows or count.
 */
export function* together(first: Part, ...rest: Part[]): Operation<unknown[]> {
  return (yield { kind: "together", parts: [first, ...rest] }) as unknown[];
}

/**
 * The operation's last statements, none depending on another's result: on MySQL they go in one
 * round trip with the transaction's START and COMMIT. The operation must return right after.
 */
export function* lastTogether(first: Part, ...rest: Part[]): Operation<unknown[]> {
  return (yield { kind: "together", parts: [first, ...rest], last: true }) as unknown[];
}

/** Two reads, the second not depending on the first's rows (Reserve's request record and the ready jobs). */
export function* rowsAndRows<A, B>(first: Statement, second: Statement): Operation<[A[], B[]]> {
  return (yield* together({ kind: "rows", statement: first }, { kind: "rows", statement: second })) as [A[], B[]];
}

/** A statement's runs, each a statement of its own: one for a plain statement, one per row for a per-row one (for drivers that send each run). */
export function runsOf(statement: Statement): Statement[] {
  const { perRow } = statement;
  if (perRow === undefined) return [statement];
  const runs: Statement[] = [];
  for (let at = 0; at < statement.params.length; at += perRow) runs.push({ sql: statement.sql, params: statement.params.slice(at, at + perRow) });
  return runs;
}

/** Shorthand for a statement run once. */
export function sql(text: string, params: readonly Param[] = []): Statement {
  return { sql: text, params };
}

/** Runs statements on better-sqlite3 (store/sqlite/sqlite-store.ts). */
export interface SyncExecutor {
  rows(statement: Statement): unknown[];
  run(statement: Statement): number;
}

/** Runs statements on mysql2 (store/mysql/mysql-store.ts). */
export interface AsyncExecutor {
  rows(statement: Statement): Promise<unknown[]>;
  run(statement: Statement): Promise<number>;
  /** Runs the statement, or keeps it to send before the next one. */
  write(statement: Statement): Promise<void>;
  /**
   * Runs the parts in order, in one round trip where it can; answers each one's rows or count.
   * `last`: the operation's last statements; the executor may commit with them.
   */
  together?(parts: readonly Part[], last?: boolean): Promise<unknown[]>;
}

/** Drives an operation on a synchronous driver (better-sqlite3). */
export function runSync<T>(operation: Operation<T>, executor: SyncExecutor): T {
  let afterLast = false;
  let next = operation.next();
  while (!next.done) {
    const step = next.value;
    if (afterLast) throw new Error("runSync: an operation went on after its last statements (lastTogether)");
    afterLast = step.kind === "together" && step.last === true;
    if (step.kind === "together") next = operation.next(step.parts.map((p) => (p.kind === "rows" ? executor.rows(p.statement) : executor.run(p.statement))));
    else next = operation.next(step.kind === "rows" ? executor.rows(step.statement) : executor.run(step.statement));
  }
  return next.value;
}

/** Drives an operation on an asynchronous driver (mysql2), one step at a time. */
export async function runAsync<T>(operation: Operation<T>, executor: AsyncExecutor): Promise<T> {
  let afterLast = false;
  let next = operation.next();
  while (!next.done) {
    const step = next.value;
    if (afterLast) throw new Error("runAsync: an operation went on after its last statements (lastTogether)");
    if (step.kind === "write") {
      await executor.write(step.statement);
      next = operation.next();
    } else if (step.kind === "together") {
      const { parts } = step;
      afterLast = step.last === true;
      if (executor.together !== undefined) next = operation.next(await executor.together(parts, step.last));
      else {
        const results: unknown[] = [];
        for (const p of parts) results.push(p.kind === "rows" ? await executor.rows(p.statement) : await executor.run(p.statement));
        next = operation.next(results);
      }
    } else next = operation.next(step.kind === "rows" ? await executor.rows(step.statement) : await executor.run(step.statement));
  }
  return next.value;
}

/** "?,?,?" for n values. */
export function placeholders(n: number): string {
  return new Array(n).fill("?").join(",");
}
