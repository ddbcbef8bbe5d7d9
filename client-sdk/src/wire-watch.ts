/**
 * Watch's messages (WatchResponse) decoded by hand (wire-reader.ts says why): a dashboard's
 * counts-only stream gets a cursor and the table's counts a second or so, and an event stream
 * event groups; protobuf-es read each through its generic, reflective loop.
 *
 * Measured: in bench scenario 5's watchers' process (500 streams, one in 50 with events, beside a
 * 3,000-job drain), protobuf-es's fromBinary was 33-44% of that process's CPU, and the process
 * took 0.24-0.37 s of CPU a drain with this decoder against 0.37-0.50 s (quick mode, MariaDB, two
 * alternations of three runs).
 *
 * Anything this does not expect (the ungrouped `events` form, a field it does not know, a field
 * that is not repeated given twice, a number past 2^53 or negative, text that is not UTF-8)
 * answers undefined, and the caller decodes with protobuf-es instead, which gives the canonical
 * message or the canonical error. The two are pinned equal by test/wire-watch.test.ts.
 *
 * @internal Not part of the public API.
 */
import type { JobEventGroup, WatchResponse } from "./gen/populus/v1/job_service_pb.js";
import type { JobStatus, KeyAttribute, Progress } from "./gen/populus/v1/types_pb.js";
import { decodeKeyAttribute, decodeTimestamp, LEN, tagOf, utf8At, VARINT, WireReader } from "./wire-reader.js";

/** WatchResponse's fields. */
const CURSOR = tagOf(1, LEN);
const PROGRESS = tagOf(2, LEN);
const EVENT_GROUP = tagOf(4, LEN);
const KEY_ATTRIBUTE = tagOf(5, LEN);

/** Progress's fields: the table's name, then its counts in Progress's order (fields 2 to 8). */
const PROGRESS_TABLE = tagOf(1, LEN);
const PROGRESS_COUNTS = ["pending", "reserved", "success", "error", "ignore", "target", "remaining"] as const;

/** JobEventGroup's fields. */
const KEYS_JSON = tagOf(1, LEN);
const STATUS = tagOf(2, VARINT);
const TIME = tagOf(3, LEN);
const WORKER_ID = tagOf(4, LEN);
const COMMITTED = tagOf(5, VARINT);
const ERROR_MESSAGE = tagOf(6, LEN);

/** The WatchResponse in `buf`, or undefined when it is not one this reads (decode it with protobuf-es). */
export function decodeWatchResponse(buf: Uint8Array): WatchResponse | undefined {
  const reader = new WireReader(buf, 0, buf.length);
  let cursor: string | undefined;
  let progress: Progress | undefined;
  const eventGroups: JobEventGroup[] = [];
  const keyAttributes: KeyAttribute[] = [];
  while (reader.pos < reader.end) {
    const tag = reader.varint32();
    // Every field this reads is length-delimited.
    if (tag < 0 || (tag & 7) !== LEN) return undefined;
    const end = reader.delimited();
    if (end < 0) return undefined;
    const start = reader.pos;
    reader.pos = end;
    if (tag === CURSOR && cursor === undefined) {
      cursor = utf8At(buf, start, end);
      if (cursor === undefined) return undefined;
    } else if (tag === PROGRESS && progress === undefined) {
      progress = decodeProgress(new WireReader(buf, start, end));
      if (progress === undefined) return undefined;
    } else if (tag === EVENT_GROUP) {
      const group = decodeEventGroup(new WireReader(buf, start, end));
      if (group === undefined) return undefined;
      eventGroups.push(group);
    } else if (tag === KEY_ATTRIBUTE) {
      const attribute = decodeKeyAttribute(new WireReader(buf, start, end));
      if (attribute === undefined) return undefined;
      keyAttributes.push(attribute);
    } else {
      // The ungrouped events, a field this does not know, or one given twice (protobuf merges or keeps the last).
      return undefined;
    }
  }
  // As protobuf-es leaves them: a message field that is absent is no property at all.
  const response: WatchResponse = { $typeName: "populus.v1.WatchResponse", cursor: cursor ?? "", events: [], eventGroups, keyAttributes };
  if (progress !== undefined) response.progress = progress;
  return response;
}

function decodeProgress(reader: WireReader): Progress | undefined {
  const progress: Progress = {
    $typeName: "populus.v1.Progress",
    table: "",
    pending: 0n,
    reserved: 0n,
    success: 0n,
    error: 0n,
    ignore: 0n,
    target: 0n,
    remaining: 0n,
  };
  let seen = 0;
  while (reader.pos < reader.end) {
    const tag = reader.varint32();
    const field = tag >>> 3;
    if (tag < 0 || field > 8 || seen & (1 << field)) return undefined;
    seen |= 1 << field;
    if (tag === PROGRESS_TABLE) {
      const table = reader.text();
      if (table === undefined) return undefined;
      progress.table = table;
      continue;
    }
    const count = PROGRESS_COUNTS[field - 2];
    if (count === undefined || (tag & 7) !== VARINT) return undefined;
    const n = reader.varint53();
    if (n < 0) return undefined;
    progress[count] = BigInt(n);
  }
  return progress;
}

function decodeEventGroup(reader: WireReader): JobEventGroup | undefined {
  const group: JobEventGroup = {
    $typeName: "populus.v1.JobEventGroup",
    keysJson: "",
    status: 0,
    workerId: "",
    committed: false,
    errorMessages: [],
  };
  let seen = 0;
  while (reader.pos < reader.end) {
    const tag = reader.varint32();
    if (tag === ERROR_MESSAGE) {
      const message = reader.text();
      if (message === undefined) return undefined;
      group.errorMessages.push(message);
      continue;
    }
    const field = tag >>> 3;
    if (tag < 0 || field > 6 || seen & (1 << field)) return undefined;
    seen |= 1 << field;
    if (tag === KEYS_JSON || tag === WORKER_ID) {
      const value = reader.text();
      if (value === undefined) return undefined;
      if (tag === KEYS_JSON) group.keysJson = value;
      else group.workerId = value;
    } else if (tag === STATUS) {
      const status = reader.varint53();
      // A negative enum value is ten bytes wide: protobuf-es's to read.
      if (status < 0 || status > 0x7fffffff) return undefined;
      group.status = status as JobStatus;
    } else if (tag === COMMITTED) {
      const committed = reader.varint53();
      if (committed !== 0 && committed !== 1) return undefined;
      group.committed = committed === 1;
    } else if (tag === TIME) {
      const end = reader.delimited();
      if (end < 0) return undefined;
      const time = decodeTimestamp(new WireReader(reader.buf, reader.pos, end));
      if (time === undefined) return undefined;
      group.time = time;
      reader.pos = end;
    } else {
      return undefined;
    }
  }
  return group;
}
