/** A table's jobs by status, a page at a time, in the reservation order, with a key filter. */
import { JobStatus, type KeyAttribute } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { useState } from "preact/hooks";
import { agoText, durationSeconds, fullTimeText, spanText, timeMs } from "../format.js";
import { useConsole, useNow } from "../hooks.js";
import { useJobsPage } from "../jobs-page.js";
import { keyText } from "../keys.js";
import { mayAdminister } from "../session.js";
import { type AdminActions, deleteErrorsAction } from "./admin-actions.js";
import { KeyFilter, type Restriction } from "./key-filter.js";
import { Pager } from "./pager.js";

const STATUS_CHOICES: readonly { label: string; statuses: readonly JobStatus[] }[] = [
  { label: "pending", statuses: [JobStatus.PENDING] },
  { label: "reserved", statuses: [JobStatus.RESERVED] },
  { label: "success", statuses: [JobStatus.SUCCESS] },
  { label: "error", statuses: [JobStatus.ERROR] },
  { label: "ignore", statuses: [JobStatus.IGNORE] },
  { label: "any", statuses: [] },
];

export const STATUS_WORD: Readonly<Record<number, string>> = {
  [JobStatus.PENDING]: "pending",
  [JobStatus.RESERVED]: "reserved",
  [JobStatus.SUCCESS]: "success",
  [JobStatus.ERROR]: "error",
  [JobStatus.IGNORE]: "ignore",
};

export function JobsView(props: { table: string; attributes: readonly KeyAttribute[]; changes: number; actions: AdminActions }) {
  const { client, role } = useConsole();
  const now = useNow();
  const [choice, setChoice] = useState("pending");
  const [restriction, setRestriction] = useState<Restriction>({});
  const statuses = STATUS_CHOICES.find((c) => c.label === choice)?.statuses ?? [];
  const page = useJobsPage({ table: props.table, statuses, restriction, pageSize: 50, changes: props.changes });
  const admin = mayAdminister(role);
  return (
    <div class="panel">
      <div class="toolbar">
        <div class="segmented" role="radiogroup" aria-label="status">
          {STATUS_CHOICES.map((c) => (
            <button type="button" key={c.label} role="radio" aria-checked={c.label === choice} class={c.label === choice ? "on" : ""} onClick={() => setChoice(c.label)}>
              {c.label}
            </button>
          ))}
        </div>
        <KeyFilter attributes={props.attributes} onChange={setRestriction} />
      </div>
      {page.problem !== undefined && <p class="notice notice-bad">{page.problem}</p>}
      <table class="grid jobs">
        <thead>
          <tr>
            <th>key</th>
            <th>status</th>
            <th class="num">priority</th>
            <th class="num">attempts</th>
            <th>created</th>
            <th>worker</th>
            <th>took</th>
            {admin && <th />}
          </tr>
        </thead>
        <tbody>
          {page.jobs?.map((job) => {
            const took = durationSeconds(job.duration);
            const created = timeMs(job.createTime);
            return (
              <tr key={keyText(job.key)} data-job={keyText(job.key)}>
                <td>
                  <code>{keyText(job.key)}</code>
                </td>
                <td>
                  <span class={`status status-${STATUS_WORD[job.status] ?? "deleted"}`}>{STATUS_WORD[job.status] ?? "?"}</span>
                </td>
                <td class="num">{job.priority}</td>
                <td class="num">{job.attempts}</td>
                <td title={fullTimeText(created)}>{agoText(created, now)}</td>
                <td class="small">{job.worker === undefined || job.worker.host === "" ? "" : `${job.worker.host}:${job.worker.pid}`}</td>
                <td>{took === undefined ? "" : spanText(took)}</td>
                {admin && (
                  <td class="row-actions">
                    {job.status !== JobStatus.IGNORE && job.key !== undefined && (
                      <button
                        type="button"
                        class="small-button"
                        onClick={() => {
                          const key = job.key;
                          if (key === undefined) return;
                          props.actions.ask({
                            title: `Ignore ${keyText(key)}`,
                            body: <p>This key is marked ignore: no worker computes it, and refresh neither re-adds nor removes it.</p>,
                            confirmLabel: "Ignore",
                            run: async () => `Ignored ${(await client.ignore({ table: props.table, keys: [key] })).ignored} key(s).`,
                          });
                        }}
                      >
                        ignore
                      </button>
                    )}
                    {job.status === JobStatus.ERROR && job.key !== undefined && (
                      <button type="button" class="small-button" onClick={() => job.key && props.actions.ask(deleteErrorsAction(client, props.table, 1, job.key))}>
                        delete
                      </button>
                    )}
                  </td>
                )}
              </tr>
            );
          })}
        </tbody>
      </table>
      {page.jobs !== undefined && page.jobs.length === 0 && <p class="muted">No {choice === "any" ? "" : `${choice} `}jobs{Object.keys(restriction).length > 0 ? " match the filter" : ""}.</p>}
      <Pager page={page} />
    </div>
  );
}
