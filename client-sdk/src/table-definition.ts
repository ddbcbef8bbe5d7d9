/**
 * What a pipeline author writes for a table: its key source and its make.
 */
import type { KeyRecord } from "./keys.js";

/** A key source's keys: an array, an iterable or an async iterable of key records. */
export type KeySourceKeys<K extends object = KeyRecord> = Iterable<K> | AsyncIterable<K>;

/**
 * The key source: the keys that should be computed. Either the keys
 * themselves or a function (sync or async) that answers them; a function is
 * called again at every refresh, so it sees new upstream data.
 */
export type KeySource<K extends object = KeyRecord> = KeySourceKeys<K> | (() => KeySourceKeys<K> | Promise<KeySourceKeys<K>>);

/** A result record: a JSON-able object, stored as the target row of the key. */
export type ResultRecord = Record<string, unknown>;

/** What `make` receives besides its key. */
export interface MakeContext<K extends object = KeyRecord> {
  /** The job's key (the same record as make's first argument). */
  readonly key: K;
  /** Which lease of this job this is, starting at 1 (2 and up: an earlier worker was lost or released it). */
  readonly attempt: number;
  /**
   * Fires when the lease is lost (expired and reassigned: the result would
   * not be committed) or the worker is told to stop. A long make should pass
   * it on to its I/O or check it, and give up.
   */
  readonly signal: AbortSignal;
  /** Reports progress within the job, 0 to 1, with an optional message; sent with the next heartbeat. */
  progress(fraction: number, message?: string): void;
}

/**
 * Computes one key: returns its result record (a JSON-able object; nothing
 * means `{}`) or throws, which records the job as error with the message and
 * stack. May run twice for one key after a crash; only one result commits.
 */
export type Make<K extends object = KeyRecord> = (key: K, ctx: MakeContext<K>) => ResultRecord | void | Promise<ResultRecord | void>;

/** The second argument of `db.table()`. */
export interface TableDefinition<K extends object = KeyRecord> {
  /** The keys to compute. */
  readonly keySource: KeySource<K>;
  /** Computes one key. */
  readonly make: Make<K>;
  /**
   * The file URL of the module that defines the table, for the child
   * processes of `populate({ processes })`, which import it.
   * @default the caller of db.table(), from the call stack
   */
  readonly module?: string;
}
