/**
 * The change log (promise 5): every transaction that changes a table's jobs
 * or target appends one row to `~populus_events`, inside that same
 * transaction, as its last statement. A row holds the count deltas of the
 * change (pending −2, reserved +2, …) and its job-level events (which keys
 * went to which status, by which worker, with which error). Because the row
 * commits with the change, every replica that tails the log sees every change
 * exactly once and in id order, and a client that resumes from a cursor (an
 * event id) on any replica misses nothing.
 *
 * Bulk queue maintenance (refresh adding or removing keys, DeleteJobs,
 * DeleteTargets) is logged as count deltas without job-level events: a
 * million-key refresh must not write a million events.
 */
import type { JobStatusName, WorkerInfo } from "./store.js";

/** What Progress counts: the five statuses and the target's rows. */
export type CountName = JobStatusName | "target";

export type CountDeltas = Partial<Record<CountName, number>>;

/** A job's status after an event; "deleted" when its row went away (completed without keepCompleted). */
export type EventStatus = JobStatusName | "deleted";

/** One job-level event. */
export interface JobEventRecord {
  /** The key as canonical JSON (as stored in key_json). */
  readonly keyJson: string;
  readonly status: EventStatus;
  /** The worker that made the change; "" for changes made by the server or an operator. */
  readonly workerId: string;
  /** The change committed a result to the target. */
  readonly committed: boolean;
  readonly errorMessage: string;
}

/** Job-level events of one step, as stored: jobs that went to one status together, by one worker. */
export interface JobEventGroupRecord {
  readonly status: EventStatus;
  readonly workerId: string;
  readonly committed: boolean;
  /** The keys as one JSON array of canonical keys. */
  readonly keysJson: string;
  /** How many keys keysJson holds. */
  readonly size: number;
  /** For a change to error, each key's message; empty otherwise. */
  readonly errorMessages: readonly string[];
}

/** A row of the change log, as read back. */
export interface ChangeRow {
  readonly id: number;
  readonly table: string;
  /** Commit time, epoch ms (the writing replica's clock). */
  readonly time: number;
  readonly deltas: CountDeltas;
  /** The row's events one by one. */
  readonly events: readonly JobEventRecord[];
  /** The same events in their stored groups. */
  readonly groups: readonly JobEventGroupRecord[];
}

/** The columns a change row is written with. */
export interface ChangeColumns {
  readonly deltas: string;
  readonly events: string;
}

/** A serialized group: jobs that went to one status in one step. Keys stay the raw JSON text they are stored as. */
interface EventGroup {
  s: EventStatus;
  w: string;
  c: 0 | 1;
  k: unknown[];
  e?: string[];
}

/**
 * The change of one transaction, built up as it runs. Serializes to the two
 * columns of `~populus_events`; an empty change writes nothing.
 */
export class Change {
  private readonly deltas: Record<string, number> = {};
  /** Serialized groups; keys are spliced in as their stored JSON text, not re-parsed. */
  private readonly groups: string[] = [];

  /** n jobs went from `from` (null: inserted) to `to` (null: deleted). */
  move(from: CountName | null, to: CountName | null, n: number): this {
    if (n === 0 || from === to) return this;
    if (from !== null) this.deltas[from] = (this.deltas[from] ?? 0) - n;
    if (to !== null) this.deltas[to] = (this.deltas[to] ?? 0) + n;
    return this;
  }

  /** Job-level events: these keys went to `status` in one step. */
  jobs(status: EventStatus, keyJsons: readonly string[], o: { workerId?: string; committed?: boolean; errorMessages?: readonly string[] } = {}): this {
    if (keyJsons.length === 0) return this;
    const head = JSON.stringify({ s: status, w: o.workerId ?? "", c: o.committed === true ? 1 : 0, ...(o.errorMessages ? { e: o.errorMessages } : {}) });
    this.groups.push(`${head.slice(0, -1)},"k":[${keyJsons.join(",")}]}`);
    return this;
  }

  get empty(): boolean {
    return this.groups.length === 0 && Object.values(this.deltas).every((n) => n === 0);
  }

  columns(): ChangeColumns {
    const deltas: CountDeltas = {};
    for (const [name, n] of Object.entries(this.deltas)) if (n !== 0) deltas[name as CountName] = n;
    return { deltas: JSON.stringify(deltas), events: `[${this.groups.join(",")}]` };
  }
}

/**
 * Parses a stored change row. Keys come back as canonical JSON text, as the rest of the store
 * hands them out. The events are parsed on first use: the change feed reads every row for its
 * counts, and most rows' tables have no watcher (parsing them all was 3% of the server's CPU in
 * a drain nobody watched).
 */
export function parseChangeRow(row: { id: number | string; table_name: string; time: number | string; deltas: string; events: string }): ChangeRow {
  let stored: EventGroup[] | undefined;
  let events: JobEventRecord[] | undefined;
  let groups: JobEventGroupRecord[] | undefined;
  const parsed = () => (stored ??= JSON.parse(row.events) as EventGroup[]);
  return {
    id: Number(row.id),
    table: row.table_name,
    time: Number(row.time),
    deltas: JSON.parse(row.deltas) as CountDeltas,
    get events() {
      return (events ??= eventsOf(parsed()));
    },
    get groups() {
      return (groups ??= (stored === undefined ? storedGroups(row.events) : null) ?? parsed().map(groupOf));
    },
  };
}

/** Where a group's keys start, as Change.jobs writes a group: its last field. */
const KEYS_FIELD = ',"k":[';

/**
 * The groups of an events column as Change.jobs writes it, each group's keys cut out of the text
 * as they are: a Watch of event groups (the SDK's, the console's) passes them on as text, and
 * parsing every key into an object to write it back out was a sixth of the server's extra CPU for
 * 500 watchers of a drain (a Reserve or Complete group holds up to 1,000 keys). Null for any other
 * shape, which the caller parses instead. `,"k":[` cannot occur inside a JSON string, whose
 * quotes are escaped, so the first one after a group's start is its keys field.
 */
export function storedGroups(text: string): JobEventGroupRecord[] | null {
  if (text === "[]") return [];
  if (text[0] !== "[") return null;
  const groups: JobEventGroupRecord[] = [];
  for (let at = 1; ; ) {
    if (text[at] !== "{") return null;
    const field = text.indexOf(KEYS_FIELD, at);
    if (field < 0) return null;
    const keysStart = field + KEYS_FIELD.length - 1;
    const keys = scanArray(text, keysStart);
    if (keys === null || text[keys.end] !== "}") return null;
    let head: Omit<EventGroup, "k">;
    try {
      head = JSON.parse(`${text.slice(at, field)}}`) as Omit<EventGroup, "k">;
    } catch {
      return null;
    }
    groups.push({
      status: head.s,
      workerId: head.w,
      committed: head.c === 1,
      keysJson: text.slice(keysStart, keys.end),
      size: keys.size,
      errorMessages: head.e ?? [],
    });
    at = keys.end + 1;
    if (text[at] === "]") return at + 1 === text.length ? groups : null;
    if (text[at] !== ",") return null;
    at++;
  }
}

/** The JSON array that opens at `start`: the index just past its `]`, and how many elements it holds; null when it does not close. */
function scanArray(text: string, start: number): { end: number; size: number } | null {
  let depth = 0;
  let size = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) depth++;
    else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
      if (depth === 0) return { end: i + 1, size: i === start + 1 ? 0 : size + 1 };
    } else if (c === 0x2c /* , */ && depth === 1) size++;
  }
  return null;
}

function eventsOf(stored: readonly EventGroup[]): JobEventRecord[] {
  const events: JobEventRecord[] = [];
  for (const g of stored) {
    g.k.forEach((key, i) => {
      events.push({ keyJson: JSON.stringify(key), status: g.s, workerId: g.w, committed: g.c === 1, errorMessage: g.e?.[i] ?? "" });
    });
  }
  return events;
}

function groupOf(g: EventGroup): JobEventGroupRecord {
  return { status: g.s, workerId: g.w, committed: g.c === 1, keysJson: JSON.stringify(g.k), size: g.k.length, errorMessages: g.e ?? [] };
}

/** A lease still held, as the stores read it before changing it. */
export interface HeldLease {
  readonly keyJson: string;
  /** Its batch, which names its holder in `~populus_leases`. */
  readonly batch: string;
}

/** The worker id of a batch's holder for the change log, "" when its row is gone. */
export function workerIdOf(holders: ReadonlyMap<string, WorkerInfo>, batch: string): string {
  return holders.get(batch)?.workerId ?? "";
}

/** Key JSONs by the worker id of their batch's holder ("" when its row is gone). */
function byWorker<J>(jobs: Iterable<J>, job: (j: J) => HeldLease, holders: ReadonlyMap<string, WorkerInfo>): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  for (const j of jobs) {
    const { keyJson, batch } = job(j);
    const workerId = workerIdOf(holders, batch);
    const list = keys.get(workerId);
    if (list === undefined) keys.set(workerId, [keyJson]);
    else list.push(keyJson);
  }
  return keys;
}

/** The change of a Complete: the held jobs leave reserved (to success or deleted) and `written` target rows appear. */
export function completionChange(
  held: readonly { key_json: string; lease_batch: string }[],
  holders: ReadonlyMap<string, WorkerInfo>,
  written: number,
  keepCompleted: boolean,
): Change {
  const change = new Change().move("reserved", keepCompleted ? "success" : null, held.length).move(null, "target", written);
  const jobs = byWorker(held, (r) => ({ keyJson: r.key_json, batch: r.lease_batch }), holders);
  for (const [workerId, keys] of jobs) change.jobs(keepCompleted ? "success" : "deleted", keys, { workerId, committed: true });
  return change;
}

/** The change of a Release: the held jobs go back to pending. */
export function releaseChange(held: ReadonlyMap<string, HeldLease>, holders: ReadonlyMap<string, WorkerInfo>): Change {
  const change = new Change().move("reserved", "pending", held.size);
  for (const [workerId, keys] of byWorker(held.values(), (h) => h, holders)) change.jobs("pending", keys, { workerId });
  return change;
}

/** The change of an Ignore of `keys`, given the statuses of those that already had a job. */
export function ignoreChange(keys: readonly { json: string }[], statusesBefore: readonly JobStatusName[]): Change {
  const change = new Change().move(null, "ignore", keys.length - statusesBefore.length);
  for (const status of statusesBefore) change.move(status, "ignore", 1);
  return change.jobs(
    "ignore",
    keys.map((k) => k.json),
  );
}
