/** A table's failed jobs with their message and full stack, a page at a time. */
import { JobStatus, type KeyAttribute } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { useState } from "preact/hooks";
import { agoText, countText, fullTimeText, timeMs } from "../format.js";
import { useConsole, useNow } from "../hooks.js";
import { useJobsPage } from "../jobs-page.js";
import { keyText } from "../keys.js";
import { mayAdminister } from "../session.js";
import { type AdminActions, deleteErrorsAction } from "./admin-actions.js";
import { KeyFilter, type Restriction } from "./key-filter.js";
import { Pager } from "./pager.js";

const ERROR_ONLY = [JobStatus.ERROR] as const;

export function ErrorsView(props: { table: string; attributes: readonly KeyAttribute[]; changes: number; errorCount: number; actions: AdminActions }) {
  const { client, role } = useConsole();
  const now = useNow();
  const [restriction, setRestriction] = useState<Restriction>({});
  const page = useJobsPage({ table: props.table, statuses: ERROR_ONLY, restriction, pageSize: 25, changes: props.changes });
  const admin = mayAdminister(role);
  return (
    <div class="panel">
      <div class="toolbar">
        <span>
          {countText(props.errorCount)} error{props.errorCount === 1 ? "" : "s"}
        </span>
        <KeyFilter attributes={props.attributes} onChange={setRestriction} />
        {admin && (
          <button
            type="button"
            class="danger"
            disabled={props.errorCount === 0}
            data-action="delete-errors"
            onClick={() => props.actions.ask(deleteErrorsAction(client, props.table, props.errorCount))}
          >
            Delete all errors…
          </button>
        )}
      </div>
      {page.problem !== undefined && <p class="notice notice-bad">{page.problem}</p>}
      {page.jobs?.map((job) => {
        const at = timeMs(job.completeTime);
        return (
          <article class="error-card" key={keyText(job.key)} data-error-key={keyText(job.key)}>
            <header>
              <code class="error-key">{keyText(job.key)}</code>
              <span class="muted small" title={fullTimeText(at)}>
                {agoText(at, now)} · attempt {job.attempts}
                {job.worker !== undefined && job.worker.host !== "" ? ` · ${job.worker.host}:${job.worker.pid}` : ""}
              </span>
              {admin && job.key !== undefined && (
                <button type="button" class="small-button" onClick={() => job.key && props.actions.ask(deleteErrorsAction(client, props.table, 1, job.key))}>
                  delete
                </button>
              )}
            </header>
            <p class="error-message">{job.errorMessage}</p>
            {job.errorStack !== "" && (
              <details class="error-stack">
                <summary>stack</summary>
                <pre>{job.errorStack}</pre>
              </details>
            )}
          </article>
        );
      })}
      {page.jobs !== undefined && page.jobs.length === 0 && <p class="muted">No errors{Object.keys(restriction).length > 0 ? " match the filter" : ""}.</p>}
      <Pager page={page} />
    </div>
  );
}
