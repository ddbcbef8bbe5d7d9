/** The console's shared hooks: the app's context, a local clock, a followed table and debouncing. */
import { Code } from "@connectrpc/connect";
import type { JobEvent, WatchResponse } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import type { Progress, TableInfo } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { createContext } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import { followWatch, type StreamState } from "./follow-watch.js";
import { callFailure, type JobClient } from "./rpc.js";
import type { Role } from "./session.js";
import type { Counts, Throughput } from "./throughput.js";

/** What every view needs: the client, the role, and where to report what a call or stream ran into. */
export interface ConsoleContext {
  readonly client: JobClient;
  readonly role: Role;
  readonly tokensRequired: boolean;
  /** The server refused the token (UNAUTHENTICATED): the page asks for one again. */
  authLost(message: string): void;
  /** The server refused an RPC for the role (PERMISSION_DENIED): the role is asked again. */
  roleRefused(): void;
  /** Each followed stream reports its state under its own id (undefined when it stops). */
  reportStream(id: string, state: StreamState | undefined): void;
  /**
   * The pace of a table as seen by this tab: one per table for the tab's life, so the table's
   * page goes on with the history its overview row gathered, and back.
   */
  throughputOf(table: string): Throughput;
}

export const Console = createContext<ConsoleContext | null>(null);

export function useConsole(): ConsoleContext {
  const c = useContext(Console);
  if (c === null) throw new Error("useConsole outside <Console.Provider>");
  return c;
}

/** The time, renewed every `everyMs` (relative times, the chart's window and ETAs move with it; it asks the server nothing). */
/**
 * The server's tables (ListTables), read again whenever `reload` changes; undefined until the
 * first answer. A failure is a problem line, and a refused token also goes to authLost.
 */
export function useTableList(reload: unknown): { tables: readonly TableInfo[] | undefined; problem: string | undefined } {
  const { client, authLost } = useConsole();
  const [tables, setTables] = useState<readonly TableInfo[] | undefined>(undefined);
  const [problem, setProblem] = useState<string | undefined>(undefined);
  useEffect(() => {
    const abort = new AbortController();
    client.listTables({}, { signal: abort.signal }).then(
      (r) => {
        setTables(r.tables);
        setProblem(undefined);
      },
      (err: unknown) => {
        if (abort.signal.aborted) return;
        const f = callFailure(err);
        if (f.code === Code.Unauthenticated) authLost(f.message);
        setProblem(`ListTables failed: ${f.message}`);
      },
    );
    return () => abort.abort();
  }, [client, reload, authLost]);
  return { tables, problem };
}

export function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

/** A Progress message as numbers. */
export function countsOf(p: Progress | undefined): Counts & { readonly remaining: number } {
  return {
    pending: Number(p?.pending ?? 0),
    reserved: Number(p?.reserved ?? 0),
    success: Number(p?.success ?? 0),
    error: Number(p?.error ?? 0),
    ignore: Number(p?.ignore ?? 0),
    target: Number(p?.target ?? 0),
    remaining: Number(p?.remaining ?? 0),
  };
}

/** A job event with the page's own sequence number (a stable list key). */
export interface SeenEvent {
  readonly seq: number;
  readonly event: JobEvent;
}

/** What the page knows of a followed table. */
export interface TableStream {
  /** The latest counts; undefined before the first. */
  readonly counts: (Counts & { readonly remaining: number }) | undefined;
  readonly throughput: Throughput;
  /** The newest events first, at most `keepEvents`. */
  readonly events: readonly SeenEvent[];
  /** Events received since the page began following (more than `events` holds once it overflows). */
  readonly eventCount: number;
  readonly state: StreamState;
  /** Grows with every message: lists that show the table's jobs re-read their page when it moves. */
  readonly changes: number;
}

/**
 * Follows `table`'s Watch stream while mounted and `enabled`: counts-only for a row of the
 * overview, with job events for the table's own page.
 */
export function useTableStream(table: string, options: { countsOnly: boolean; enabled?: boolean; keepEvents?: number }): TableStream {
  const { client, reportStream, authLost, throughputOf } = useConsole();
  const enabled = options.enabled ?? true;
  const keep = options.keepEvents ?? 500;
  const throughput = throughputOf(table);
  const seq = useRef(0);
  const [snapshot, setSnapshot] = useState<Omit<TableStream, "throughput">>({
    counts: undefined,
    events: [],
    eventCount: 0,
    state: { kind: "connecting" },
    changes: 0,
  });
  useEffect(() => {
    if (!enabled) return;
    const id = `${table}:${options.countsOnly ? "counts" : "events"}:${Math.random()}`;
    const stop = followWatch(client, table, {
      countsOnly: options.countsOnly,
      onMessage(message: WatchResponse) {
        const counts = message.progress === undefined ? undefined : countsOf(message.progress);
        if (counts !== undefined) throughput.record(counts);
        const fresh = message.events.map((event) => ({ seq: ++seq.current, event })).reverse();
        setSnapshot((s) => ({
          ...s,
          counts: counts ?? s.counts,
          events: fresh.length === 0 ? s.events : [...fresh, ...s.events].slice(0, keep),
          eventCount: s.eventCount + fresh.length,
          changes: s.changes + 1,
        }));
      },
      onState(state) {
        setSnapshot((s) => ({ ...s, state }));
        reportStream(id, state);
        if (state.kind === "stopped" && state.code === Code.Unauthenticated) authLost(state.reason);
      },
    });
    return () => {
      stop();
      reportStream(id, undefined);
    };
  }, [client, table, options.countsOnly, enabled, keep, throughput, reportStream, authLost]);
  return { ...snapshot, throughput };
}

/**
 * A value that follows `value` at most once per `ms`: the first change passes at once, later
 * ones within the interval are folded into one at its end.
 */
export function useThrottled<T>(value: T, ms: number): T {
  const [shown, setShown] = useState(value);
  const lastAt = useRef(0);
  useEffect(() => {
    const wait = lastAt.current + ms - Date.now();
    if (wait <= 0) {
      lastAt.current = Date.now();
      setShown(value);
      return;
    }
    const timer = setTimeout(() => {
      lastAt.current = Date.now();
      setShown(value);
    }, wait);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return shown;
}
