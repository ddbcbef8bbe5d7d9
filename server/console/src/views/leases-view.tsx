/**
 * Who holds leases now: the reserved jobs with their worker (host, pid, id), since when, when the
 * lease ends and make's own progress as its last heartbeat reported it. Heartbeats are no Watch
 * event, so a progress shown is as fresh as the table's last change (or the Reload button).
 */
import { JobStatus, type KeyAttribute } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { useState } from "preact/hooks";
import { agoText, clockText, fullTimeText, spanText, timeMs } from "../format.js";
import { useNow } from "../hooks.js";
import { useJobsPage } from "../jobs-page.js";
import { keyText } from "../keys.js";
import { KeyFilter, type Restriction } from "./key-filter.js";
import { Pager } from "./pager.js";

const RESERVED_ONLY = [JobStatus.RESERVED] as const;

export function LeasesView(props: { table: string; attributes: readonly KeyAttribute[]; changes: number }) {
  const now = useNow();
  const [restriction, setRestriction] = useState<Restriction>({});
  const page = useJobsPage({ table: props.table, statuses: RESERVED_ONLY, restriction, pageSize: 100, changes: props.changes });
  return (
    <div class="panel">
      <div class="toolbar">
        <KeyFilter attributes={props.attributes} onChange={setRestriction} />
        <button type="button" onClick={page.reload} title="read the leases again (make's progress comes with heartbeats, which are no Watch event)">
          Reload
        </button>
      </div>
      {page.problem !== undefined && <p class="notice notice-bad">{page.problem}</p>}
      <table class="grid leases">
        <thead>
          <tr>
            <th>key</th>
            <th>host</th>
            <th class="num">pid</th>
            <th>worker id</th>
            <th>since</th>
            <th>lease ends</th>
            <th class="num">attempt</th>
            <th>progress</th>
          </tr>
        </thead>
        <tbody>
          {page.jobs?.map((job) => {
            const since = timeMs(job.reserveTime);
            const ends = timeMs(job.leaseExpireTime);
            return (
              <tr key={keyText(job.key)} data-lease={keyText(job.key)}>
                <td>
                  <code>{keyText(job.key)}</code>
                </td>
                <td>{job.worker?.host}</td>
                <td class="num">{job.worker?.pid}</td>
                <td class="small">{job.worker?.workerId}</td>
                <td title={fullTimeText(since)}>
                  {clockText(since)} <span class="muted small">({agoText(since, now)})</span>
                </td>
                <td title={fullTimeText(ends)}>{ends === undefined ? "" : ends > now ? `in ${spanText((ends - now) / 1000)}` : "expired"}</td>
                <td class="num">{job.attempts}</td>
                <td class="lease-progress">
                  <meter min={0} max={1} value={job.progress} />
                  <span>
                    {Math.round(job.progress * 100)}%{job.progressMessage !== "" ? ` · ${job.progressMessage}` : ""}
                  </span>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {page.jobs !== undefined && page.jobs.length === 0 && <p class="muted">No job is leased now.</p>}
      <Pager page={page} />
    </div>
  );
}
