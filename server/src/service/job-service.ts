/**
 * JobService handlers: validate → store call → map the result. Handlers never
 * touch SQL; errors are mapped to gRPC codes by the interceptor in routes.ts.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { timestampFromMs, durationFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { JsonObject, MessageInitShape, UnknownField } from "@bufbuild/protobuf";
import { type JobService, type Lease, type LeaseColumns, LeaseColumnsSchema } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import { asciiListField, packedUint32Field } from "@populus/sdk/wire-ascii";
import type { JobSchema } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { TableNotFoundError } from "../errors.js";
import { decodeKey, type KeyAttributes } from "../key-codec.js";
import type { DeclaredTable, JobRecord, JobStore, LeaseGrant } from "../store/store.js";
import type { ClaimOutcome } from "../store/operations/refresh-claims.js";
import { parseTableName } from "../table-name.js";
import {
  validateAbandonRefresh,
  validateClaimRefresh,
  validateComplete,
  validateDeleteJobs,
  validateDeleteTargets,
  validateFail,
  validateHeartbeat,
  validateIgnore,
  validateListJobs,
  validateListTargets,
  validateRefresh,
  validateRelease,
  validateReserve,
  validateWatch,
} from "./validate.js";
import { type Codec, codecOf, keyAttributeMessages, progressMessage, STATUS_TO_PROTO } from "./messages.js";
import type { WatchHub } from "./watch-hub.js";
import { watchResponse } from "./watch-responses.js";
import type { ServerMetrics } from "./metrics.js";
import type { ClaimChange, WorkNotifier } from "./work-notifier.js";

/**
 * A Reserve's leases as columns (as_columns): the stored canonical key JSON goes out as it is, and
 * no message per lease is built or encoded. The leases of one Reserve share their expiry.
 */
/**
 * A Reserve answer in columns. For binary codecs the lease tokens, attempts and priorities go
 * pre-encoded (wire-ascii.ts in the SDK): encoding a thousand strings one by one was the largest
 * part of encoding the answer, and the lists of numbers went value by value too.
 */
function leaseColumns(grants: readonly LeaseGrant[], attributes: KeyAttributes, codec: Codec): LeaseColumns | undefined {
  if (grants.length === 0) return undefined;
  const n = grants.length;
  const columns: LeaseColumns = {
    $typeName: "populus.v1.LeaseColumns",
    leaseTokens: new Array<string>(n),
    keysJson: "",
    attempts: new Array<number>(n),
    priorities: new Array<number>(n),
    leaseExpireTime: timestampFromMs((grants[0] as LeaseGrant).leaseExpireTime),
    keyAttributes: keyAttributeMessages(attributes),
  };
  const keys = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const g = grants[i] as LeaseGrant;
    columns.leaseTokens[i] = g.leaseToken;
    keys[i] = g.keyJson;
    columns.attempts[i] = g.attempt;
    columns.priorities[i] = g.priority;
  }
  columns.keysJson = `[${keys.join(",")}]`;
  if (codec !== "binary") return columns;
  const unknown: UnknownField[] = [];
  const tokens = asciiListField(LeaseColumnsSchema.field.leaseTokens.number, columns.leaseTokens);
  if (tokens !== undefined) {
    columns.leaseTokens = [];
    unknown.push(tokens);
  }
  const attempts = packedUint32Field(LeaseColumnsSchema.field.attempts.number, columns.attempts);
  const priorities = packedUint32Field(LeaseColumnsSchema.field.priorities.number, columns.priorities);
  if (attempts !== undefined && priorities !== undefined) {
    columns.attempts = [];
    columns.priorities = [];
    unknown.push(attempts, priorities);
  }
  if (unknown.length > 0) columns.$unknown = unknown;
  return columns;
}

function jobMessage(job: JobRecord, attributes: KeyAttributes): MessageInitShape<typeof JobSchema> {
  const ts = (ms: number | null) => (ms === null ? undefined : timestampFromMs(ms));
  return {
    key: decodeKey(job.keyJson, attributes),
    status: STATUS_TO_PROTO[job.status],
    priority: job.priority,
    createTime: timestampFromMs(job.createTime),
    scheduledTime: timestampFromMs(job.scheduledTime),
    reserveTime: ts(job.reserveTime),
    completeTime: ts(job.completeTime),
    duration: job.durationMs === null ? undefined : durationFromMs(job.durationMs),
    worker: job.worker ?? undefined,
    attempts: job.attempts,
    leaseExpireTime: job.status === "reserved" ? ts(job.leaseExpireTime) : undefined,
    errorMessage: job.errorMessage ?? "",
    errorStack: job.errorStack ?? "",
    progress: job.progress ?? 0,
    progressMessage: job.progressMessage ?? "",
  };
}

export interface JobServiceDeps {
  readonly store: JobStore;
  /** Wakes long-polling Reserve calls of this replica. */
  readonly notifier: WorkNotifier;
  readonly hub: WatchHub;
  /** Counts leases, commits and failures; none in tests that build the service alone. */
  readonly metrics?: ServerMetrics;
  readonly clock?: () => number;
  /** Aborts when the server starts to stop (main.ts); none in tests that build the service alone. */
  readonly shutdownSignal?: AbortSignal;
}

/**
 * How often a long-polling ClaimRefresh held back by a running refresh looks again: a claim that
 * ends through this replica reschedules it (claimChanged), one that ends through another replica,
 * or lapses, is seen this late at most (a quarter more or less, so that a table's waiters do not
 * look at once).
 */
const RUNNING_RECHECK_MS = 10_000;
/** Long-polls held back until the same instant look again spread over this long, so that one takes the claim and the rest find it held. */
const DUE_SPREAD_MS = 1000;
/** A long-poll answers this long before its call's deadline (connect-timeout-ms), so that the answer arrives in time. */
const DEADLINE_MARGIN_MS = 500;

/**
 * The error a long-polling ClaimRefresh ends with when it stops waiting unanswered: its caller
 * left (the call's own error), or the server is stopping: UNAVAILABLE, so that the SDK asks again
 * (this replica once restarted, or another) rather than take an early answer for a server that
 * cannot long-poll.
 */
function waitEndedError(signal: AbortSignal): ConnectError {
  return signal.reason instanceof ConnectError ? signal.reason : new ConnectError("the server is stopping: ask again", Code.Unavailable);
}

const TAKEN: ClaimChange = { kind: "taken" };
const FREED: ClaimChange = { kind: "freed" };

/** How long a long-polling ClaimRefresh held back at `now` waits before it looks again, if nothing wakes it first. */
function untilClaimMayBeGranted(heldBack: ClaimOutcome, minIntervalMs: number, now: number): number {
  // Held back and not running: held back as recent, so a refresh finished at lastRefreshTime.
  if (heldBack.running || heldBack.lastRefreshTime === null) return runningRecheckMs();
  return untilDue(heldBack.lastRefreshTime, minIntervalMs, now);
}

/** A look again at a claim held by a running refresh, a quarter more or less than RUNNING_RECHECK_MS away. */
function runningRecheckMs(): number {
  return RUNNING_RECHECK_MS * (0.75 + Math.random() / 2);
}

/** Until a claim whose refresh finished at `lastRefreshTime` comes due for an interval of `minIntervalMs`, spread. */
function untilDue(lastRefreshTime: number, minIntervalMs: number, now: number): number {
  return Math.max(0, lastRefreshTime + minIntervalMs - now) + Math.random() * DUE_SPREAD_MS;
}

/** Builds the JobService implementation over a store. */
export function createJobService(deps: JobServiceDeps): ServiceImpl<typeof JobService> {
  const { store, notifier, hub, metrics } = deps;
  const clock = deps.clock ?? Date.now;
  /** The declared table for a request's table name; NOT_FOUND when never refreshed. */
  async function declared(name: string): Promise<DeclaredTable> {
    const table = parseTableName(name);
    const def = await store.describeTable(table.stored);
    if (def === null) throw new TableNotFoundError(table.display);
    return def;
  }

  return {
    async refresh(req) {
      const table = parseTableName(req.table);
      const def = await store.describeTable(table.stored);
      const input = validateRefresh(req, def);
      const counts = await store.refresh({ table: table.stored, displayName: table.display, ...input, now: clock() });
      // Once the call is done (a refused call changes nothing): a call of a claimed refresh holds its claim on, its final call ends it.
      const finishedAt = clock();
      const claimed = input.claimId === null ? null : await store.refreshClaimed(table.stored, input.claimId, input.final, finishedAt);
      if (counts.added > 0 || counts.orphaned > 0 || counts.rePended > 0) notifier.notify(table.stored);
      // Idle workers held back by this claim learn its next due time, without a look each; at once
      // when an operator's delete made the next refresh due while this one ran.
      else if (claimed === "recorded") notifier.claimChanged(table.stored, { kind: "finished", lastRefreshTime: finishedAt });
      else if (claimed === "due") notifier.claimChanged(table.stored, FREED);
      hub.committed(table.stored);
      return {
        added: BigInt(counts.added),
        removed: BigInt(counts.removed),
        orphaned: BigInt(counts.orphaned),
        rePended: BigInt(counts.rePended),
        anyPending: counts.anyPending ?? undefined,
        // Only where the client has more calls of this refresh to send: a refresh of one call (a curl, a
        // one-key enqueue) is final by validation, and gets the answer it always had.
        callsAtOnce: input.final ? 0 : store.refreshCallsAtOnce,
      };
    },

    async claimRefresh(req, ctx) {
      const table = parseTableName(req.table);
      const claim = validateClaimRefresh(req);
      if (claim.renew) return { granted: await store.renewRefreshClaim(table.stored, claim.claimId, clock()) };
      const callDeadline = ctx.timeoutMs();
      const deadline = clock() + Math.min(claim.waitMs, callDeadline === undefined ? claim.waitMs : callDeadline - DEADLINE_MARGIN_MS);
      for (;;) {
        // Taken before looking, as Reserve's: a refresh that queues jobs, or a claim that changes, while we look ends the wait at once.
        const seen = notifier.markIdle(table.stored);
        const now = clock();
        const outcome = await store.claimRefresh({ table: table.stored, ...claim, now });
        if (outcome.granted && claim.waitMs > 0 && ctx.signal.aborted) {
          // Granted as its caller left: given back, or it would hold the claim until it lapsed.
          if (await store.abandonRefresh(table.stored, claim.claimId)) notifier.claimChanged(table.stored, FREED);
          throw waitEndedError(ctx.signal);
        }
        // The table's other idle workers here look again when the refresh may be over, not now.
        if (outcome.granted) notifier.claimChanged(table.stored, TAKEN);
        // Held back, the caller goes straight to reserving: with nothing pending it need not.
        const anyPending = outcome.granted ? undefined : await store.anyPending(table.stored, clock());
        const remaining = deadline - clock();
        if (outcome.granted || anyPending === true || remaining <= 0) {
          metrics?.refreshClaims.inc({ table: table.stored, outcome: outcome.granted ? "granted" : outcome.running ? "running" : "recent" });
          return {
            granted: outcome.granted,
            running: outcome.running,
            lastRefreshTime: outcome.lastRefreshTime === null ? undefined : timestampFromMs(outcome.lastRefreshTime),
            anyPending,
          };
        }
        if (ctx.signal.aborted) throw waitEndedError(ctx.signal);
        const rescheduled = (change: ClaimChange) => {
          if (change.kind === "freed") return null;
          const at = clock();
          const next = change.kind === "taken" ? runningRecheckMs() : untilDue(change.lastRefreshTime, claim.minIntervalMs, at);
          return Math.max(0, Math.min(deadline - at, next));
        };
        await notifier.waitIdle(table.stored, Math.min(remaining, untilClaimMayBeGranted(outcome, claim.minIntervalMs, now)), ctx.signal, seen, rescheduled);
        // Not looked at again: a caller gone would hold a claim granted to it until it lapsed.
        if (ctx.signal.aborted) throw waitEndedError(ctx.signal);
      }
    },

    async abandonRefresh(req) {
      const table = parseTableName(req.table);
      const claimId = validateAbandonRefresh(req);
      const released = await store.abandonRefresh(table.stored, claimId);
      // Free now: an idle worker waiting on this replica takes it at once.
      if (released) notifier.claimChanged(table.stored, FREED);
      return { released };
    },

    async reserve(req, ctx) {
      const codec = codecOf(ctx.requestHeader);
      const def = await declared(req.table);
      const input = validateReserve(req, def.keyAttributes);
      const deadline = clock() + input.waitMs;
      // The call's signal also aborts when the server starts to stop, whose calls in flight still answer.
      const callerGone = () => ctx.signal.aborted && deps.shutdownSignal?.aborted !== true;
      for (;;) {
        // Taken before looking: a refresh that commits while we look wakes the wait below at once.
        const seen = notifier.mark(def.name);
        const grants = await store.reserve({ table: def.name, ...input, now: clock(), callerGone });
        const remaining = deadline - clock();
        if (grants.length > 0 || remaining <= 0 || ctx.signal.aborted) {
          metrics?.reservations.inc({ table: def.name }, grants.length);
          if (grants.length > 0) hub.committed(def.name);
          // Message literals (up to 1,000 per answer), not init objects for connect's create() to
          // reflect over; the leases of one Reserve share their expiry time.
          let expiry: { ms: number; at: Timestamp } | undefined;
          const expireTime = (ms: number) => (expiry?.ms === ms ? expiry.at : (expiry = { ms, at: timestampFromMs(ms) }).at);
          if (req.asColumns) return { $typeName: "populus.v1.ReserveResponse", leases: [], columns: leaseColumns(grants, def.keyAttributes, codec) };
          return {
            $typeName: "populus.v1.ReserveResponse",
            leases: grants.map(
              (g): Lease => ({
                $typeName: "populus.v1.Lease",
                key: decodeKey(g.keyJson, def.keyAttributes),
                leaseToken: g.leaseToken,
                leaseExpireTime: expireTime(g.leaseExpireTime),
                attempt: g.attempt,
                priority: g.priority,
              }),
            ),
          };
        }
        await notifier.wait(def.name, remaining, ctx.signal, seen);
        // A caller gone (or a server stopping) is leased nothing: its leases would wait out their length.
        if (ctx.signal.aborted) return { $typeName: "populus.v1.ReserveResponse", leases: [] };
      }
    },

    async complete(req) {
      const def = await declared(req.table);
      const completions = validateComplete(req);
      const outcome = await store.complete(def.name, completions, req.keepCompleted, clock());
      metrics?.completions.inc({ table: def.name }, outcome.committed);
      if (outcome.committed > 0) hub.committed(def.name);
      return { committed: BigInt(outcome.committed), alreadyCommitted: BigInt(outcome.alreadyCommitted) };
    },

    async fail(req) {
      const def = await declared(req.table);
      const f = validateFail(req);
      await store.fail(def.name, f.leaseToken, f.errorMessage, f.errorStack, clock());
      metrics?.failures.inc({ table: def.name });
      hub.committed(def.name);
      return {};
    },

    async heartbeat(req) {
      const def = await declared(req.table);
      const h = validateHeartbeat(req);
      const result = await store.heartbeat(def.name, h.tokens, h.leaseMs, h.progress, clock());
      return { lostLeaseTokens: result.lost, leaseExpireTime: timestampFromMs(result.leaseExpireTime) };
    },

    async release(req) {
      const def = await declared(req.table);
      const result = await store.release(def.name, validateRelease(req));
      if (result.released > 0) {
        notifier.notify(def.name);
        hub.committed(def.name);
      }
      return { released: BigInt(result.released), lostLeaseTokens: result.lost };
    },

    async *watch(req, ctx) {
      const def = await declared(req.table);
      const w = validateWatch(req);
      const codec = codecOf(ctx.requestHeader);
      const form = req.groupedEvents ? "groups" : "events";
      for await (const message of hub.watch(def.name, { ...w, signal: ctx.signal })) yield watchResponse(def, message, form, codec);
    },

    async listJobs(req) {
      const def = await declared(req.table);
      const { filter, page } = validateListJobs(req, def.keyAttributes);
      const result = await store.listJobs(def.name, filter, page);
      return { jobs: result.rows.map((j) => jobMessage(j, def.keyAttributes)), nextPageToken: result.next ?? "" };
    },

    async getProgress(req) {
      const def = await declared(req.table);
      return { progress: progressMessage(def.name, await store.getProgress(def.name)) };
    },

    async deleteJobs(req) {
      const def = await declared(req.table);
      const d = validateDeleteJobs(req, def);
      const deleted = await store.deleteJobs(def.name, d.statuses, d.keys);
      // The next refresh queues them again, and is due now: idle workers waiting on it are told.
      if (deleted > 0) notifier.claimChanged(def.name, FREED);
      return { deleted: BigInt(deleted) };
    },

    async ignore(req) {
      const def = await declared(req.table);
      return { ignored: BigInt(await store.ignore(def.name, validateIgnore(req, def), clock())) };
    },

    async listTables() {
      const tables = await store.listTables();
      return {
        tables: await Promise.all(
          tables.map(async (t) => ({
            name: t.name,
            displayName: t.displayName,
            keyAttributes: keyAttributeMessages(t.keyAttributes),
            createTime: timestampFromMs(t.createTime),
            progress: progressMessage(t.name, await store.getProgress(t.name)),
          })),
        ),
      };
    },

    async deleteTargets(req) {
      const def = await declared(req.table);
      const deleted = await store.deleteTargets(def.name, validateDeleteTargets(req, def));
      if (deleted > 0) notifier.claimChanged(def.name, FREED);
      return { deleted: BigInt(deleted) };
    },

    async listTargets(req) {
      const def = await declared(req.table);
      const { restriction, page } = validateListTargets(req, def.keyAttributes);
      const result = await store.listTargets(def.name, restriction, page);
      return {
        rows: result.rows.map((r) => ({
          key: decodeKey(r.keyJson, def.keyAttributes),
          result: JSON.parse(r.resultJson) as JsonObject,
          completeTime: timestampFromMs(r.completeTime),
        })),
        nextPageToken: result.next ?? "",
      };
    },
  };
}
