/**
 * The IPC messages between `populate({ processes })` and its child processes
 * (populate-child.ts). The channel uses Node's "advanced" serialization
 * (structured clone), so bigint key values cross it intact.
 */
import type { JobsSettings, ResolvedConnectOptions } from "./config.js";
import type { KeyRecord, KeyValue } from "./keys.js";
import type { MakeOutcome } from "./populate-progress.js";
import type { KeyError } from "./reserve-loop.js";

/** Parent → child, first message: what to run. */
export interface StartMessage {
  readonly type: "start";
  /** The module that defines the table. */
  readonly moduleUrl: string;
  /** Where the table was defined, for messages. */
  readonly where: string;
  readonly table: string;
  /** The parent's connection options; the child opens its own connection. */
  readonly connect: ResolvedConnectOptions;
  /** The parent's config.jobs at populate time. */
  readonly jobs: JobsSettings;
  /** This child's share of maxCalls; undefined for no limit. */
  readonly maxCalls: number | undefined;
  readonly priority: number | undefined;
  readonly restriction: Readonly<Record<string, KeyValue>> | undefined;
  readonly suppressErrors: boolean;
  /** Lease length, seconds. */
  readonly leaseDurationS: number;
  /** populate's grace: how long running makes may finish when a SIGTERM/SIGINT reaches the child itself, seconds. */
  readonly graceS: number;
  /** Send a MakeMessage as each make call starts and ends (displayProgress without reserveJobs). */
  readonly reportMakes?: boolean;
}

/** Parent → child: stop reserving; running makes may finish for graceS seconds, then are cancelled; release what is held, report. */
export interface StopMessage {
  readonly type: "stop";
  /** Seconds running makes may take to finish (0: cancel them now). */
  readonly graceS: number;
}

/** Child → parent: the first failure (suppressErrors false), sent at once so the parent stops the others. */
export interface FailureMessage {
  readonly type: "failure";
  readonly key: KeyRecord;
  readonly message: string;
}

/** Child → parent: the child's loop ended. */
export interface DoneMessage {
  readonly type: "done";
  readonly successCount: number;
  readonly errorList: KeyError[];
}

/** Child → parent: a make call started or ended (only with StartMessage.reportMakes), for populate's progress display. */
export interface MakeMessage {
  readonly type: "make";
  readonly outcome: MakeOutcome;
}

/** Child → parent: the child could not run (table not loadable, RPC error); the parent throws it. */
export interface FatalMessage {
  readonly type: "fatal";
  /** The error class name (e.g. "WorkerProcessError", "UnavailableError"). */
  readonly name: string;
  readonly message: string;
}

/** Child → parent: renew these leases (the parent's heartbeat thread keeps every child's leases; populate-heartbeat.ts). */
export interface HoldMessage {
  readonly type: "hold";
  readonly tokens: readonly string[];
}

/** Child → parent: renew these leases no more (committed, failed, released or lost). */
export interface DropMessage {
  readonly type: "drop";
  readonly tokens: readonly string[];
}

/** Child → parent: progress of one job, sent with its next renewal. */
export interface ProgressMessage {
  readonly type: "progress";
  readonly token: string;
  readonly fraction: number;
  readonly message: string;
}

/** Parent → child: the server answered these leases of the child as lost. */
export interface LostMessage {
  readonly type: "lost";
  readonly tokens: readonly string[];
}

/** What a child's reserve loop tells the parent's heartbeat. */
export type HeartbeatMessage = HoldMessage | DropMessage | ProgressMessage;

/** Any parent → child message. */
export type ToChild = StartMessage | StopMessage | LostMessage;
/** Any child → parent message. */
export type ToParent = FailureMessage | DoneMessage | FatalMessage | MakeMessage | HeartbeatMessage;
