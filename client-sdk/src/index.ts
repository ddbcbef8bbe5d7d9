/**
 * @populus/sdk: the pipeline API of Populus.
 *
 * ```ts
 * import { connect } from "@populus/sdk";
 * const db = connect();                       // POPULUS_URL or http://127.0.0.1:50051
 * export const ProcessedData = db.table("ProcessedData", {
 *   keySource: () => sessions(),              // array or (async) iterable of keys
 *   make: async (key, ctx) => ({ mean: await compute(key) }), // result row
 * });
 *
 * await ProcessedData.populate();                              // one worker, no jobs table
 * await ProcessedData.populate({ reserveJobs: true, processes: 4 });
 * const r = await ProcessedData.populate({
 *   reserveJobs: true, displayProgress: true, suppressErrors: true, maxCalls: 100,
 *   priority: 3, refresh: true,
 * });                                          // { successCount, errorList }
 * await ProcessedData.jobs.refresh({ priority: 1, orphanTimeout: 3600 }); // { added, removed, orphaned, rePended }
 * for (const job of await ProcessedData.jobs.errors.fetch()) console.log(job.key, job.errorMessage);
 * await ProcessedData.jobs.errors.delete();
 * ProcessedData.jobs.watch();                  // Observable of progress
 * await db.listTables();                       // [{ name, displayName, keyAttributes, createTime, progress }]
 * await db.jobs("ProcessedData").fetch({ statuses: ["error"], limit: 10 }); // a table's jobs by name, no pipeline needed
 * ```
 *
 * Define tables at the top level of a module file with no other side
 * effects: `populate({ processes })` starts child processes that import it.
 */
export { connect, PopulusClient } from "./client.js";
export type { ConnectOptions, JobsSettings, PopulusConfig, ResolvedConnectOptions, VersionMethod } from "./config.js";
export { config, DEFAULT_URL, JobsConfig } from "./config.js";
export {
  CursorExpiredError,
  fromRpcError,
  InvalidArgumentError,
  InvalidConfigError,
  LeaseLostError,
  MakeError,
  PermissionDeniedError,
  PopulusError,
  ResourceExhaustedError,
  TableNotFoundError,
  UnauthenticatedError,
  UnavailableError,
  WorkerProcessError,
} from "./errors.js";
export type { FetchAnyJobsOptions, FetchJobsOptions, JobRecord, JobStatusName, JobsRefreshOptions, ProgressCounts } from "./jobs.js";
export { Jobs, JobsView } from "./jobs.js";
export type { KeyRecord, KeyValue } from "./keys.js";
export type { DisplayProgressOptions, PopulateOptions, PopulateResult } from "./populate.js";
export type { RefreshCounts } from "./refresh.js";
export type { KeyError } from "./reserve-loop.js";
export type { RetryPolicy } from "./retry.js";
export { DEFAULT_RETRY } from "./retry.js";
export type { FetchOptions, TargetRecord, WaitForWorkOptions } from "./table.js";
export type { WorkFound } from "./claimed-refresh.js";
export { Table } from "./table.js";
export type { KeyAttributeInfo, KeyAttributeType, TableInfo } from "./table-info.js";
export type { KeySource, KeySourceKeys, Make, MakeContext, ResultRecord, TableDefinition } from "./table-definition.js";
export type { JobEvent, JobEventStatus, WatchOptions, WatchUpdate } from "./watch.js";
