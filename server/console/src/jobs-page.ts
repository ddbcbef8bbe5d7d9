/**
 * One page of a table's jobs from ListJobs, read again when the table's Watch stream reports a
 * change (at most once a second, so a busy table costs one ListJobs a second while its page is
 * open, and an idle one none).
 */
import { Code } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Job, JobStatus, ValueSchema } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { useEffect, useState } from "preact/hooks";
import { useConsole, useThrottled } from "./hooks.js";
import { callFailure } from "./rpc.js";

export interface JobsPageQuery {
  readonly table: string;
  readonly statuses: readonly JobStatus[];
  readonly restriction: Readonly<Record<string, MessageInitShape<typeof ValueSchema>>>;
  readonly pageSize: number;
  /** The stream's change counter (TableStream.changes). */
  readonly changes: number;
}

export interface JobsPage {
  readonly jobs: readonly Job[] | undefined;
  readonly problem: string | undefined;
  /** 1-based number of the page shown. */
  readonly pageNumber: number;
  readonly hasNext: boolean;
  next(): void;
  previous(): void;
  /** Reads the page again now (after an action). */
  reload(): void;
}

export function useJobsPage(q: JobsPageQuery): JobsPage {
  const { client, authLost } = useConsole();
  // Page tokens of the pages before the one shown ("" is the first page).
  const [tokens, setTokens] = useState<readonly string[]>([""]);
  const [answer, setAnswer] = useState<{ jobs: readonly Job[]; next: string } | undefined>(undefined);
  const [problem, setProblem] = useState<string | undefined>(undefined);
  const [reloads, setReloads] = useState(0);
  const changes = useThrottled(q.changes, 1000);
  const filterKey = JSON.stringify({ s: q.statuses, r: q.restriction, n: q.pageSize }, (_, v) => (typeof v === "bigint" ? v.toString() : v));
  // A new filter starts at the first page.
  useEffect(() => setTokens([""]), [q.table, filterKey]);
  const token = tokens[tokens.length - 1] ?? "";
  useEffect(() => {
    const abort = new AbortController();
    client
      .listJobs(
        { table: q.table, statuses: [...q.statuses], restriction: { ...q.restriction }, pageSize: q.pageSize, pageToken: token },
        { signal: abort.signal },
      )
      .then(
        (r) => {
          setAnswer({ jobs: r.jobs, next: r.nextPageToken });
          setProblem(undefined);
        },
        (err: unknown) => {
          if (abort.signal.aborted) return;
          const f = callFailure(err);
          if (f.code === Code.Unauthenticated) authLost(f.message);
          setProblem(`ListJobs failed: ${f.message}`);
        },
      );
    return () => abort.abort();
    // filterKey stands for statuses, restriction and pageSize.
  }, [client, q.table, filterKey, token, changes, reloads, authLost]);
  return {
    jobs: answer?.jobs,
    problem,
    pageNumber: tokens.length,
    hasNext: (answer?.next ?? "") !== "",
    next: () => {
      const next = answer?.next ?? "";
      if (next !== "") setTokens((t) => [...t, next]);
    },
    previous: () => setTokens((t) => (t.length > 1 ? t.slice(0, -1) : t)),
    reload: () => setReloads((n) => n + 1),
  };
}
