/**
 * Small helpers for tests that talk to JobService through the generated
 * Connect client: keys with one int64 attribute `id`, durations in seconds,
 * progress counts as plain numbers, whole-table dumps (every page) and the
 * ConnectError of a call that must fail.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { DurationSchema } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { JobService } from "../../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import type { Job, JobStatus, Key, KeySchema, TargetRow } from "../../client-sdk/dist/gen/populus/v1/types_pb.js";

/** The generated JobService client. */
export type JobsClient = Client<typeof JobService>;

/** A client on its own HTTP/2 connection (Connect protocol) to `baseUrl`. */
export function jobsClient(baseUrl: string): JobsClient {
  return createClient(JobService, createConnectTransport({ baseUrl, httpVersion: "2" }));
}

/** The key `{ id: n }` (id is int64). */
export function key(n: number | bigint): MessageInitShape<typeof KeySchema> {
  return { attributes: { id: { kind: { case: "intValue", value: BigInt(n) } } } };
}

/** The keys `{ id: from }` … `{ id: to - 1 }`. */
export function keys(from: number, to: number): ReturnType<typeof key>[] {
  const out: ReturnType<typeof key>[] = [];
  for (let n = from; n < to; n++) out.push(key(n));
  return out;
}

/** The `id` of a key made by key(); throws on any other key. */
export function idOf(k: Key | undefined): number {
  const v = k?.attributes.id?.kind;
  if (v?.case !== "intValue") throw new Error(`not an { id: int64 } key: ${JSON.stringify(k, (_, x) => (typeof x === "bigint" ? `${x}n` : x))}`);
  return Number(v.value);
}

/** A Duration of `s` seconds (may be fractional or negative). */
export function seconds(s: number): MessageInitShape<typeof DurationSchema> {
  const whole = Math.trunc(s);
  return { seconds: BigInt(whole), nanos: Math.round((s - whole) * 1e9) };
}

/** A table's counts, as numbers. */
export interface Counts {
  pending: number;
  reserved: number;
  success: number;
  error: number;
  ignore: number;
  target: number;
  remaining: number;
}

/** GetProgress, as numbers. */
export async function counts(client: JobsClient, table: string): Promise<Counts> {
  const { progress } = await client.getProgress({ table });
  if (progress === undefined) throw new Error(`GetProgress(${table}) answered no progress`);
  return {
    pending: Number(progress.pending),
    reserved: Number(progress.reserved),
    success: Number(progress.success),
    error: Number(progress.error),
    ignore: Number(progress.ignore),
    target: Number(progress.target),
    remaining: Number(progress.remaining),
  };
}

/** Counts with every field 0 except those given. */
export function only(c: Partial<Counts>): Counts {
  return { pending: 0, reserved: 0, success: 0, error: 0, ignore: 0, target: 0, remaining: 0, ...c };
}

/** Every job of a table (every page of ListJobs), optionally of some statuses. */
export async function allJobs(client: JobsClient, table: string, statuses: JobStatus[] = []): Promise<Job[]> {
  const jobs: Job[] = [];
  let pageToken = "";
  do {
    const page = await client.listJobs({ table, statuses, pageSize: 1000, pageToken });
    jobs.push(...page.jobs);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return jobs;
}

/** The job of key `{ id }`, or undefined when the table has none. */
export async function jobOf(client: JobsClient, table: string, id: number): Promise<Job | undefined> {
  const { jobs } = await client.listJobs({ table, restriction: { id: { kind: { case: "intValue", value: BigInt(id) } } } });
  if (jobs.length > 1) throw new Error(`ListJobs(${table}, id=${id}) answered ${jobs.length} jobs for one key`);
  return jobs[0];
}

/** Every row of a table's target (every page of ListTargets). */
export async function allTargets(client: JobsClient, table: string): Promise<TargetRow[]> {
  const rows: TargetRow[] = [];
  let pageToken = "";
  do {
    const page = await client.listTargets({ table, pageSize: 1000, pageToken });
    rows.push(...page.rows);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return rows;
}

/** The ConnectError a call rejects with; throws if it resolves or rejects with something else. */
export async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  let answer: unknown;
  try {
    answer = await call;
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  }
  throw new Error(`expected the call to fail, but it answered ${JSON.stringify(answer, (_, x) => (typeof x === "bigint" ? `${x}n` : x))}`);
}

/** Code's name for messages: Code[5] → "NotFound". */
export function codeName(code: Code): string {
  return Code[code] ?? String(code);
}

/** Polls `probe` every `everyMs` until it answers true; throws after `timeoutMs` naming `what`. */
export async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 15_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
