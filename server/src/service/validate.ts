/**
 * Request validation: one function per request type, run before any store
 * call, so a rejected request changes nothing. Each returns the store's input
 * in normalized form (milliseconds, canonical keys, stored table names).
 */
import type { JsonObject } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import type {
  CompleteRequest,
  DeleteJobsRequest,
  DeleteTargetsRequest,
  FailRequest,
  HeartbeatRequest,
  IgnoreRequest,
  ListJobsRequest,
  ListTargetsRequest,
  ClaimRefreshRequest,
  AbandonRefreshRequest,
  RefreshRequest,
  ReleaseRequest,
  ReserveRequest,
  WatchRequest,
} from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import { JobStatus, type Key, type WorkerIdentity } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { InvalidKeyError, InvalidRequestError, LimitExceededError } from "../errors.js";
import {
  attributesOf,
  declaredAttributes,
  type EncodedKey,
  type EncodedKeyList,
  encodeCanonicalKeysJson,
  encodeJsonKey,
  encodeKey,
  encodeRestriction,
  jsonKindOf,
  type KeyAttributes,
  type KeyHashScheme,
  NEW_TABLE_KEY_HASH,
  type TableKeys,
} from "../key-codec.js";
import { describeAttributes, sameAttributes } from "../store/row-mapping.js";
import type { Completion, JobFilter, JobStatusName, LeaseProgressInput, PageRequest, WorkerInfo } from "../store/store.js";

/** Keys one Refresh or Ignore call may carry; a larger key source is sent in several calls. */
export const MAX_KEYS_PER_CALL = 10_000;
/** Jobs one Reserve may lease, results one Complete may commit, tokens one Heartbeat/Release may name. */
export const MAX_BATCH = 1000;
/** Longest lease, and the default. */
const MAX_LEASE_MS = 24 * 3600_000;
export const DEFAULT_LEASE_MS = 60_000;
/** Longest long-poll wait. */
export const MAX_WAIT_MS = 60_000;
export const DEFAULT_STALE_TIMEOUT_MS = 3600_000;
export const DEFAULT_PRIORITY = 5;
/** Largest result of one Complete, in UTF-8 bytes of its JSON; MEDIUMTEXT holds 16 MiB, a row should hold far less. */
export const MAX_RESULT_BYTES = 4 * 1024 * 1024;
/** Largest sum of the results of one Complete call: one INSERT must stay below MariaDB's default max_allowed_packet (16 MiB). */
export const MAX_COMPLETE_BYTES = 8 * 1024 * 1024;
/**
 * Deepest nesting of objects and arrays in a result. Below protobuf-es's own
 * decoding limit (100 message levels, two per JSON level, about 48 JSON
 * levels after the request's own), so that this check, with its message,
 * answers first; deeper still, decoding fails before validation.
 */
export const MAX_RESULT_DEPTH = 32;
/** error_stack is cut (not refused) to this many characters: a failure must always be recordable. */
export const MAX_ERROR_STACK = 65_536;
const TRUNCATED = "...truncated";
const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;
const MAX_TEXT = 255;

/** Converts a Duration to milliseconds; negative or absurd durations are INVALID_ARGUMENT. */
export function durationMs(d: Duration | undefined, field: string, defaultMs: number, maxMs = Number.MAX_SAFE_INTEGER): number {
  if (d === undefined) return defaultMs;
  const ms = Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
  if (d.seconds < 0n || d.nanos < 0 || !Number.isFinite(ms)) throw new InvalidRequestError(`${field} must not be negative`);
  if (ms > maxMs) throw new InvalidRequestError(`${field} must be at most ${maxMs / 1000} s, got ${ms / 1000} s`);
  return ms;
}

function priorityValue(p: number | undefined, field: string): number | null {
  if (p === undefined) return null;
  if (p > 255) throw new InvalidRequestError(`${field} must be from 0 to 255 (lower is more urgent), got ${p}`);
  return p;
}

function countLimit(n: number, max: number, what: string, hint: string): void {
  if (n > max) throw new LimitExceededError(`${n} ${what} in one call; at most ${max} are allowed (${hint})`);
}

function encodeKeys(keys: readonly Key[], table: TableKeys, rpc: string): EncodedKey[] {
  return keys.map((k, i) => encodeKey(k, table.keyAttributes, table.keyHash, `${rpc} key #${i + 1}`));
}

function tokens(list: readonly string[], rpc: string): string[] {
  if (list.length === 0) throw new InvalidRequestError(`${rpc}: lease_tokens is empty; give at least one lease token`);
  countLimit(list.length, MAX_BATCH, "lease tokens", "split the call");
  const seen = new Set<string>();
  for (const t of list) {
    // Lease tokens are issued in printable ASCII (and stored in an ASCII column: MySQL refuses to compare one with other text).
    if (!printableAscii(t, 64)) throw new InvalidRequestError(`${rpc}: "${t.slice(0, 80)}" is not a lease token`);
    if (seen.has(t)) throw new InvalidRequestError(`${rpc}: lease token ${t} is given twice`);
    seen.add(t);
  }
  return list.slice();
}

function text(value: string, field: string): string {
  if (value.length > MAX_TEXT) throw new InvalidRequestError(`${field} is ${value.length} characters; at most ${MAX_TEXT} are allowed`);
  return value;
}

function worker(w: WorkerIdentity | undefined): WorkerInfo {
  return {
    workerId: text(w?.workerId ?? "", "worker.worker_id"),
    host: text(w?.host ?? "", "worker.host"),
    pid: w?.pid ?? 0,
    user: text(w?.user ?? "", "worker.user"),
    codeVersion: text(w?.codeVersion ?? "", "worker.code_version"),
  };
}

const STATUS_NAMES: Record<number, JobStatusName> = {
  [JobStatus.PENDING]: "pending",
  [JobStatus.RESERVED]: "reserved",
  [JobStatus.SUCCESS]: "success",
  [JobStatus.ERROR]: "error",
  [JobStatus.IGNORE]: "ignore",
};

function statuses(list: readonly JobStatus[]): JobStatusName[] {
  return [
    ...new Set(
      list.map((s) => {
        const name = STATUS_NAMES[s];
        if (name === undefined) throw new InvalidRequestError(`status ${s} is not a job status; use PENDING, RESERVED, SUCCESS, ERROR or IGNORE`);
        return name;
      }),
    ),
  ];
}

function page(pageSize: number, pageToken: string, tokenPattern: RegExp): PageRequest {
  if (pageSize > MAX_PAGE) throw new InvalidRequestError(`page_size must be at most ${MAX_PAGE}, got ${pageSize}`);
  if (pageToken !== "" && !tokenPattern.test(pageToken)) throw new InvalidRequestError(`page_token "${pageToken.slice(0, 80)}" was not issued by this server`);
  return { pageSize: pageSize === 0 ? DEFAULT_PAGE : pageSize, after: pageToken === "" ? null : pageToken };
}

/** A request field of JSON text, parsed; INVALID_ARGUMENT naming `field` when it is not JSON. */
function parseJsonField(text: string, field: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidRequestError(`${field} is not JSON (${(err as Error).message.slice(0, 200)})`);
  }
}

/**
 * A column-form Refresh's keys (keys_json with key_attributes): the declared attributes must be the
 * table's when it exists; each key is encoded as the same key sent as a Key message would be.
 */
function refreshKeysInColumns(
  req: RefreshRequest,
  attributes: KeyAttributes | null,
  keyHash: KeyHashScheme,
): { keyAttributes: KeyAttributes | null; keys: EncodedKeyList } {
  if (req.keys.length > 0) throw new InvalidRequestError("Refresh: give keys or keys_json, not both");
  const canonical = canonicalKeysInColumns(req, attributes, keyHash);
  if (canonical !== undefined) return canonical;
  const parsed = parseJsonField(req.keysJson, "Refresh: keys_json");
  if (!Array.isArray(parsed)) throw new InvalidRequestError("Refresh: keys_json must be a JSON array of keys");
  countLimit(parsed.length, MAX_KEYS_PER_CALL, "keys", "send a large key source as several calls sharing one refresh_id");
  if (parsed.length === 0) return { keyAttributes: null, keys: [] };
  const declared = declaredAttributes(req.keyAttributes, "Refresh");
  if (attributes !== null && !sameAttributes(attributes, declared)) {
    throw new InvalidKeyError(
      `Refresh: key_attributes ${describeAttributes(declared)} do not match the table's key attributes ${describeAttributes(attributes)}`,
    );
  }
  const keyAttributes = attributes ?? declared;
  return { keyAttributes, keys: parsed.map((k, i) => encodeJsonKey(k, keyAttributes, keyHash, `Refresh keys_json[${i}]`)) };
}

/**
 * A column-form Refresh's keys read as the SDK writes them (encodeCanonicalKeysJson), when the
 * declared attributes are the table's; undefined for anything else, which refreshKeysInColumns
 * then parses and checks in its order, with its messages.
 */
function canonicalKeysInColumns(req: RefreshRequest, attributes: KeyAttributes | null, keyHash: KeyHashScheme) {
  let declared: KeyAttributes;
  try {
    declared = declaredAttributes(req.keyAttributes, "Refresh");
  } catch {
    return undefined;
  }
  if (attributes !== null && !sameAttributes(attributes, declared)) return undefined;
  const keyAttributes = attributes ?? declared;
  const keys = encodeCanonicalKeysJson(req.keysJson, keyAttributes, keyHash, "Refresh keys_json", MAX_KEYS_PER_CALL);
  return keys === undefined ? undefined : { keyAttributes, keys };
}

/** Refresh: `table` is the table's definition, or null for a table not yet declared (whose keys are hashed as a new table's). */
export function validateRefresh(req: RefreshRequest, table: TableKeys | null) {
  countLimit(req.keys.length, MAX_KEYS_PER_CALL, "keys", "send a large key source as several calls sharing one refresh_id");
  if (req.refreshId.length > 64) throw new InvalidRequestError(`refresh_id must be at most 64 characters`);
  const attributes = table?.keyAttributes ?? null;
  const keyHash = table?.keyHash ?? NEW_TABLE_KEY_HASH;
  let keyAttributes: KeyAttributes | null;
  let keys: EncodedKeyList;
  if (req.keysJson !== "" || req.keyAttributes.length > 0) {
    ({ keyAttributes, keys } = refreshKeysInColumns(req, attributes, keyHash));
  } else {
    const first = req.keys[0];
    keyAttributes = first === undefined ? null : (attributes ?? attributesOf(first, "Refresh key #1"));
    keys = keyAttributes === null ? [] : encodeKeys(req.keys, { keyAttributes, keyHash }, "Refresh");
  }
  return {
    keyAttributes,
    keyHash,
    keys,
    refreshId: req.refreshId === "" ? null : req.refreshId,
    final: req.refreshId === "" || req.final,
    claimId: req.claimId === "" ? null : claimIdValue(req.claimId, "Refresh"),
    priority: priorityValue(req.priority, "priority") ?? DEFAULT_PRIORITY,
    delayMs: durationMs(req.delay, "delay", 0),
    staleTimeoutMs: durationMs(req.staleTimeout, "stale_timeout", DEFAULT_STALE_TIMEOUT_MS),
    orphanTimeoutMs: req.orphanTimeout === undefined ? null : durationMs(req.orphanTimeout, "orphan_timeout", 0),
  };
}

/** Default and bounds of ClaimRefresh's durations. */
const DEFAULT_CLAIM_TIMEOUT_MS = 600_000;
const MAX_CLAIM_DURATION_MS = 86_400_000;

/** A claim id as ClaimRefresh, Refresh and AbandonRefresh take it: stored in an ASCII column. */
function claimIdValue(id: string, rpc: string): string {
  if (!printableAscii(id, 64)) {
    throw new InvalidRequestError(`${rpc}: claim_id must be 1 to 64 printable ASCII characters (a UUID does), got "${id.slice(0, 80)}"`);
  }
  return id;
}

/** ClaimRefresh: the claim id and durations, defaults applied. */
export function validateClaimRefresh(req: ClaimRefreshRequest) {
  const claimTimeoutMs = durationMs(req.claimTimeout, "claim_timeout", DEFAULT_CLAIM_TIMEOUT_MS, MAX_CLAIM_DURATION_MS);
  if (claimTimeoutMs < 1000) throw new InvalidRequestError(`claim_timeout must be at least 1 s, got ${claimTimeoutMs} ms`);
  const waitMs = durationMs(req.wait, "wait", 0, MAX_WAIT_MS);
  if (waitMs > 0 && req.renew) throw new InvalidRequestError("wait cannot go with renew: a renewal answers at once");
  return {
    claimId: claimIdValue(req.claimId, "ClaimRefresh"),
    minIntervalMs: durationMs(req.minInterval, "min_interval", 0, MAX_CLAIM_DURATION_MS),
    claimTimeoutMs,
    renew: req.renew,
    waitMs,
  };
}

/** AbandonRefresh: the claim id. */
export function validateAbandonRefresh(req: AbandonRefreshRequest): string {
  return claimIdValue(req.claimId, "AbandonRefresh");
}

export function validateReserve(req: ReserveRequest, attributes: KeyAttributes) {
  if (req.maxJobs === 0) throw new InvalidRequestError("max_jobs must be at least 1");
  if (req.maxJobs > MAX_BATCH) throw new InvalidRequestError(`max_jobs must be at most ${MAX_BATCH}, got ${req.maxJobs}`);
  const leaseMs = durationMs(req.leaseDuration, "lease_duration", DEFAULT_LEASE_MS, MAX_LEASE_MS);
  if (leaseMs < 1000) throw new InvalidRequestError(`lease_duration must be at least 1 s, got ${leaseMs} ms`);
  return {
    maxJobs: req.maxJobs,
    maxPriority: priorityValue(req.maxPriority, "max_priority"),
    restriction: encodeRestriction(req.restriction, attributes, "Reserve restriction"),
    worker: worker(req.worker),
    leaseMs,
    waitMs: durationMs(req.wait, "wait", 0, MAX_WAIT_MS),
    requestId: requestId(req.requestId),
  };
}

/**
 * Whether `text` is 1 to `max` printable ASCII characters without spaces, as the ids and tokens
 * that clients make are (a UUID fits): they log as they are and go into ASCII columns (MySQL
 * refuses to compare such a column with other text).
 */
function printableAscii(text: string, max: number): boolean {
  return text.length >= 1 && text.length <= max && /^[\x21-\x7e]+$/.test(text);
}

/** Reserve's request_id; null when absent (every call then leases anew). */
function requestId(id: string): string | null {
  if (id === "") return null;
  if (!printableAscii(id, 128)) throw new InvalidRequestError("request_id must be 1-128 printable ASCII characters without spaces");
  return id;
}

/** Throws when a result nests deeper than MAX_RESULT_DEPTH; iterative, so a hostile depth cannot overflow the stack here. */
function checkDepth(result: unknown, where: () => string): void {
  // Most result records are flat: nothing to walk (and nothing allocated) when no member is an object.
  if (result !== null && typeof result === "object" && !Array.isArray(result)) {
    let nested = false;
    for (const key in result) {
      const member = (result as Record<string, unknown>)[key];
      if (member !== null && typeof member === "object") {
        nested = true;
        break;
      }
    }
    if (!nested) return;
  }
  const pending: [unknown, number][] = [[result, 1]];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    const [value, depth] = item;
    if (value === null || typeof value !== "object") continue;
    if (depth > MAX_RESULT_DEPTH) throw new InvalidRequestError(`${where()} nests objects and arrays deeper than ${MAX_RESULT_DEPTH} levels`);
    for (const child of Array.isArray(value) ? value : Object.values(value)) pending.push([child, depth + 1]);
  }
}

/** A result given as a Struct, as compact JSON text. */
function resultOfStruct(result: JsonObject | undefined, where: () => string): string {
  checkDepth(result, where);
  return JSON.stringify(result ?? {});
}

/** The results of a Complete in columns: results_json parsed as an array of one object per lease token. */
function resultsOfJsonText(text: string, count: number): unknown[] {
  const parsed = parseJsonField(text, "Complete: results_json");
  if (!Array.isArray(parsed))
    throw new InvalidRequestError(`Complete: results_json must be a JSON array with one result record per lease token, got ${jsonKindOf(parsed)}`);
  if (parsed.length !== count)
    throw new InvalidRequestError(`Complete: ${count} lease_tokens but ${parsed.length} results in results_json; give one result per lease`);
  return parsed;
}

/** One result record of results_json, checked as a Struct would be, as compact JSON text (as a Struct's text is). */
function resultOfJsonValue(value: unknown, where: () => string): string {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidRequestError(`${where()} must be a JSON object (the result record), got ${jsonKindOf(value)}`);
  }
  checkDepth(value, where);
  return JSON.stringify(value);
}

/** Complete's results, from completions or from lease_tokens with results_json. */
export function validateComplete(req: CompleteRequest): Completion[] {
  const columns = req.leaseTokens.length > 0 || req.resultsJson !== "";
  if (columns && req.completions.length > 0) {
    throw new InvalidRequestError("Complete: give completions or lease_tokens with results_json, not both");
  }
  const leaseTokens = columns ? req.leaseTokens : req.completions.map((c) => c.leaseToken);
  if (leaseTokens.length === 0) {
    throw new InvalidRequestError(
      columns ? "Complete: lease_tokens is empty; give the lease of each result in results_json" : "Complete: completions is empty; give at least one result",
    );
  }
  tokens(leaseTokens, "Complete");
  const fromJson = columns ? resultsOfJsonText(req.resultsJson, leaseTokens.length) : [];
  let total = 0;
  const out = leaseTokens.map((leaseToken, i) => {
    // Named only for an error message: building the name of every result was a measurable share of a Complete.
    const where = () => (columns ? `Complete: results_json[${i}]` : `Complete: the result of completion #${i + 1}`);
    const resultJson = columns ? resultOfJsonValue(fromJson[i], where) : resultOfStruct(req.completions[i]?.result, where);
    const bytes = Buffer.byteLength(resultJson, "utf8");
    if (bytes > MAX_RESULT_BYTES) {
      throw new InvalidRequestError(
        `${where()} is ${bytes} bytes as JSON; at most ${MAX_RESULT_BYTES} are allowed (store large data elsewhere and return a reference)`,
      );
    }
    total += bytes;
    return { leaseToken, resultJson };
  });
  if (total > MAX_COMPLETE_BYTES) {
    throw new LimitExceededError(`Complete: the results are ${total} bytes as JSON in one call; at most ${MAX_COMPLETE_BYTES} are allowed (split the call)`);
  }
  return out;
}

export function validateFail(req: FailRequest) {
  const [token] = tokens([req.leaseToken], "Fail");
  // The message is cut to 2047 characters by the store (DataJoint's limit); the stack only needs a bound.
  const errorStack = req.errorStack.length > MAX_ERROR_STACK ? req.errorStack.slice(0, MAX_ERROR_STACK - TRUNCATED.length) + TRUNCATED : req.errorStack;
  return { leaseToken: token as string, errorMessage: req.errorMessage, errorStack };
}

export function validateHeartbeat(req: HeartbeatRequest) {
  const list = tokens(req.leaseTokens, "Heartbeat");
  const leaseMs = durationMs(req.leaseDuration, "lease_duration", DEFAULT_LEASE_MS, MAX_LEASE_MS);
  if (leaseMs < 1000) throw new InvalidRequestError(`lease_duration must be at least 1 s, got ${leaseMs} ms`);
  // Each progress entry is one UPDATE: unbounded, one call could keep the database busy for minutes.
  countLimit(req.progress.length, MAX_BATCH, "progress entries", "split the call");
  const progress: LeaseProgressInput[] = req.progress.map((p) => {
    if (!(p.progress >= 0 && p.progress <= 1)) throw new InvalidRequestError(`progress must be from 0 to 1, got ${p.progress}`);
    return { leaseToken: p.leaseToken, progress: p.progress, message: text(p.message, "progress message") };
  });
  return { tokens: list, leaseMs, progress };
}

export function validateRelease(req: ReleaseRequest): string[] {
  return tokens(req.leaseTokens, "Release");
}

/** A Watch cursor is a change id, written in decimal. */
export function validateWatch(req: WatchRequest): { cursor: number | null; countsOnly: boolean } {
  if (req.cursor === "") return { cursor: null, countsOnly: req.countsOnly };
  if (!/^\d{1,15}$/.test(req.cursor)) throw new InvalidRequestError(`Watch: cursor "${req.cursor.slice(0, 40)}" was not issued by this server`);
  return { cursor: Number(req.cursor), countsOnly: req.countsOnly };
}

export function validateListJobs(req: ListJobsRequest, attributes: KeyAttributes): { filter: JobFilter; page: PageRequest } {
  return {
    filter: {
      statuses: statuses(req.statuses),
      maxPriority: priorityValue(req.maxPriority, "max_priority"),
      restriction: encodeRestriction(req.restriction, attributes, "ListJobs restriction"),
    },
    page: page(req.pageSize, req.pageToken, /^\d{1,3}\.\d{1,16}\.\d{1,16}$/),
  };
}

export function validateDeleteJobs(req: DeleteJobsRequest, table: TableKeys) {
  if (req.statuses.length === 0 && req.keys.length === 0) {
    throw new InvalidRequestError("DeleteJobs needs statuses or keys (or both); to delete every job, list all five statuses");
  }
  countLimit(req.keys.length, MAX_KEYS_PER_CALL, "keys", "split the call");
  return { statuses: statuses(req.statuses), keys: encodeKeys(req.keys, table, "DeleteJobs") };
}

export function validateIgnore(req: IgnoreRequest, table: TableKeys): EncodedKey[] {
  if (req.keys.length === 0) throw new InvalidRequestError("Ignore: keys is empty; give at least one key");
  countLimit(req.keys.length, MAX_KEYS_PER_CALL, "keys", "split the call");
  return encodeKeys(req.keys, table, "Ignore");
}

export function validateDeleteTargets(req: DeleteTargetsRequest, table: TableKeys): EncodedKey[] | "all" {
  if (req.all && req.keys.length > 0) throw new InvalidRequestError("DeleteTargets: give keys or all, not both");
  if (req.all) return "all";
  if (req.keys.length === 0) throw new InvalidRequestError("DeleteTargets needs keys, or all = true to delete every computed row");
  countLimit(req.keys.length, MAX_KEYS_PER_CALL, "keys", "split the call");
  return encodeKeys(req.keys, table, "DeleteTargets");
}

export function validateListTargets(req: ListTargetsRequest, attributes: KeyAttributes) {
  return {
    restriction: encodeRestriction(req.restriction, attributes, "ListTargets restriction"),
    page: page(req.pageSize, req.pageToken, /^[0-9a-v]{32}$/),
  };
}
