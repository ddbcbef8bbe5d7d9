/**
 * A table: an auto-populated table of one server, with its key source and
 * make, its computed rows (`fetch`, `delete`), its jobs (`jobs`) and
 * `populate`.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import type { ResolvedConnectOptions } from "./config.js";
import { RefreshClaim, type WorkFound, waitForWork } from "./claimed-refresh.js";
import { config, MAX_REFRESH_INTERVAL_S } from "./config.js";
import { InvalidArgumentError } from "./errors.js";
import { Jobs } from "./jobs.js";
import { fromProtoKey, type KeyRecord, type KeyValue, sumOverKeyCalls, toRestriction } from "./keys.js";
import { populate, type PopulateOptions, type PopulateResult } from "./populate.js";
import type { JobServiceRpc } from "./rpc.js";
import type { TableDefinition } from "./table-definition.js";
import type { DefinitionSite, RegisteredTable } from "./table-registry.js";
import { count, dateOf } from "./wire-values.js";

/** A computed row: a key whose make committed, with its result record. */
export interface TargetRecord<K extends object = KeyRecord> {
  readonly key: K;
  readonly result: JsonObject;
  /** When the result was committed. */
  readonly completeTime: Date | undefined;
}

/** Options of `table.fetch()`. */
export interface FetchOptions {
  /** Only rows whose key has these attribute values. */
  readonly restriction?: Readonly<Record<string, KeyValue>>;
}

/** The longest wait of waitForWork: a day. */
const MAX_WAIT_S = 86_400;

/** waitForWork's refreshInterval where config.jobs.refreshInterval is 0: populus-worker's default. */
const DEFAULT_WAIT_REFRESH_INTERVAL_S = 30;

/** Options of `table.waitForWork()`. */
export interface WaitForWorkOptions {
  /** The longest wait, in seconds (0 to 86,400). @default 60 */
  readonly wait?: number;
  /**
   * As populate's: a refresh that finished less than this many seconds ago is not due; more than 0.
   * @default config.jobs.refreshInterval, or 30 where that is 0
   */
  readonly refreshInterval?: number;
  /** Ends the wait (resolving null). */
  readonly signal?: AbortSignal;
}

/** An auto-populated table. Made by `db.table(name, { keySource, make })`. */
export class Table<K extends object = KeyRecord> implements RegisteredTable {
  /** The name as given, e.g. "ProcessedData" (the server stores processed_data). */
  readonly name: string;
  /** Its jobs. */
  readonly jobs: Jobs<K>;
  /** The table's refresh claim in this process (claimed-refresh.ts). @internal */
  readonly refreshClaim = new RefreshClaim();
  /** @internal The key source and make. */
  readonly definition: TableDefinition<K>;
  /** @internal Where the table was defined (for child processes). */
  readonly site: DefinitionSite;
  /** @internal The connection's options (child processes open their own). */
  readonly connectOptions: ResolvedConnectOptions;
  /** @internal The connection. */
  readonly rpc: JobServiceRpc;

  /** @internal Use db.table(). */
  constructor(name: string, definition: TableDefinition<K>, site: DefinitionSite, connectOptions: ResolvedConnectOptions, rpc: JobServiceRpc) {
    if (typeof definition !== "object" || definition === null || typeof definition.make !== "function") {
      throw new InvalidArgumentError(`table ${name}: the definition needs make(key, ctx), a function`);
    }
    if (definition.keySource === undefined || definition.keySource === null) {
      throw new InvalidArgumentError(`table ${name}: the definition needs a keySource (an array, iterable or function of keys)`);
    }
    this.name = name;
    this.definition = definition;
    this.site = site;
    this.connectOptions = connectOptions;
    this.rpc = rpc;
    this.jobs = new Jobs<K>(rpc, name, definition.keySource);
  }

  /**
   * Computes the keys of the key source that are not in the target yet.
   * See PopulateOptions for the modes; answers `{ successCount, errorList }`.
   */
  populate(options: PopulateOptions<K> = {}): Promise<PopulateResult<K>> {
    return populate(this, options);
  }

  /**
   * Waits, as an idle worker does between passes of populate, until the table has work: "jobs" when
   * a job is pending, "refresh" when its refresh is due (none within `refreshInterval`, none
   * running), whose claim this process then holds for its next populate; null when `wait` seconds
   * passed without either or `signal` aborted. One long-poll on the server: no call while nothing
   * changes, and an answer as soon as something does. With config.jobs.autoRefresh off (populate
   * does not refresh) it takes no claim, and reads the table's counts every 10 s instead. A
   * long-poll the server leaves unanswered past its deadline (its wait and 30 s: a server or a
   * connection that hangs) throws UnavailableError, as a server that cannot be reached does.
   */
  async waitForWork(options: WaitForWorkOptions = {}): Promise<WorkFound> {
    const wait = options.wait ?? 60;
    const refreshInterval = options.refreshInterval ?? (config.jobs.refreshInterval > 0 ? config.jobs.refreshInterval : DEFAULT_WAIT_REFRESH_INTERVAL_S);
    if (!(Number.isFinite(wait) && wait >= 0 && wait <= MAX_WAIT_S))
      throw new InvalidArgumentError(`wait must be from 0 to ${MAX_WAIT_S} seconds, got ${wait}`);
    if (!(Number.isFinite(refreshInterval) && refreshInterval > 0 && refreshInterval <= MAX_REFRESH_INTERVAL_S)) {
      throw new InvalidArgumentError(
        `refreshInterval must be more than 0 and at most ${MAX_REFRESH_INTERVAL_S} seconds (with 0 a refresh is always due, and the wait would end at once), got ${refreshInterval}`,
      );
    }
    return waitForWork(this.rpc, this.name, this.refreshClaim, { refresh: config.jobs.autoRefresh, refreshInterval, waitS: wait, signal: options.signal });
  }

  /** Every computed row (every page of ListTargets). */
  async fetch(options: FetchOptions = {}): Promise<TargetRecord<K>[]> {
    const out: TargetRecord<K>[] = [];
    let pageToken = "";
    do {
      const page = await this.rpc.listTargets({ table: this.name, restriction: toRestriction(options.restriction), pageSize: 1000, pageToken });
      for (const row of page.rows) out.push({ key: fromProtoKey(row.key) as K, result: row.result ?? {}, completeTime: dateOf(row.completeTime) });
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return out;
  }

  /**
   * Deletes computed rows so their keys are computed again after the next
   * refresh: those of `keys`, or every row with `{ all: true }`. Answers how
   * many rows were deleted.
   */
  async delete(keys: readonly K[] | { readonly all: true }): Promise<number> {
    if (Array.isArray(keys)) {
      return sumOverKeyCalls(keys, async (chunk) => count((await this.rpc.deleteTargets({ table: this.name, keys: chunk })).deleted));
    }
    if ((keys as { all?: unknown }).all !== true) throw new InvalidArgumentError("table.delete: pass an array of keys or { all: true }");
    return count((await this.rpc.deleteTargets({ table: this.name, all: true })).deleted);
  }
}
