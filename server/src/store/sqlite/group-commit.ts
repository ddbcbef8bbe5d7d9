/**
 * Group commit for the SQLite store: the write transactions asked for within one turn of the event
 * loop run as one `BEGIN IMMEDIATE ... COMMIT`, each in a savepoint of its own, so a transaction
 * that fails rolls back alone and the others commit. Every caller is answered only after the
 * group's COMMIT, so an answer still means "synced to disk".
 *
 * Why: a commit costs the pages it writes to the WAL (a write call per page) and an fsync of
 * 0.15-0.3 ms here, whatever it writes. Calls of a few jobs each from several clients paid both
 * each; in one commit the pages they share (table and index pages, the change log) are written
 * once and synced once.
 *
 * better-sqlite3 is synchronous, so while one group runs, the requests that arrive wait in their
 * sockets; the next turn of the loop reads them all, and their transactions are asked for before
 * setImmediate's callback runs them as the next group. A lone request waits one turn of the loop.
 * The store sends only small transactions here (sqlite-store.ts, GROUPED_ROWS_AT_MOST): a member is
 * answered once the whole group has run, so a short one grouped with a long one waits for it.
 */
import type BetterSqlite3 from "better-sqlite3";

/** One transaction of a group: its work (synchronous statements) and its caller's promise. */
interface Queued {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** Savepoint name of each member: members run one after another, so one name serves them all. */
const MEMBER = "populus_group_member";

export class GroupCommit {
  #queue: Queued[] = [];
  #scheduled = false;
  readonly #begin: BetterSqlite3.Statement;
  readonly #commit: BetterSqlite3.Statement;
  readonly #rollback: BetterSqlite3.Statement;
  readonly #savepoint: BetterSqlite3.Statement;
  readonly #release: BetterSqlite3.Statement;
  readonly #rollbackTo: BetterSqlite3.Statement;

  constructor(private readonly db: BetterSqlite3.Database) {
    this.#begin = db.prepare("BEGIN IMMEDIATE");
    this.#commit = db.prepare("COMMIT");
    this.#rollback = db.prepare("ROLLBACK");
    this.#savepoint = db.prepare(`SAVEPOINT ${MEMBER}`);
    this.#release = db.prepare(`RELEASE ${MEMBER}`);
    this.#rollbackTo = db.prepare(`ROLLBACK TO ${MEMBER}`);
  }

  /** Runs `work` in a transaction of the next group: its value once the group has committed, or its own error. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const group = this.#queue;
    this.#queue = [];
    let outcomes: Outcome[];
    try {
      outcomes = this.#runGroup(group);
    } catch (error) {
      // BEGIN or COMMIT failed, or SQLite rolled the whole transaction back (an I/O error, a full
      // disk): nothing of the group is written.
      if (this.db.inTransaction) this.#rollback.run();
      for (const member of group) member.reject(error);
      return;
    }
    for (let i = 0; i < group.length; i++) {
      const outcome = outcomes[i] as Outcome;
      const member = group[i] as Queued;
      if (outcome.ok) member.resolve(outcome.value);
      else member.reject(outcome.error);
    }
  }

  /** The group's transaction: each member's outcome once it has committed; throws when nothing did. */
  #runGroup(group: readonly Queued[]): Outcome[] {
    this.#begin.run();
    const outcomes: Outcome[] = [];
    for (const member of group) {
      this.#savepoint.run();
      try {
        outcomes.push({ ok: true, value: member.work() });
        this.#release.run();
      } catch (error) {
        // Some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM) end the whole transaction: the
        // members before this one are rolled back too, so the group fails as one.
        if (!this.db.inTransaction) throw error;
        this.#rollbackTo.run();
        this.#release.run();
        outcomes.push({ ok: false, error });
      }
    }
    this.#commit.run();
    return outcomes;
  }
}
