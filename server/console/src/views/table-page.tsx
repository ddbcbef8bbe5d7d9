/**
 * One table: its live counts, progress, jobs/s and ETA on top, and below them the event feed,
 * the jobs by status, the errors, the leases held now and the admin actions, one tab each.
 * Everything follows the table's one Watch stream (with job events).
 */
import { useState } from "preact/hooks";
import { ProgressBar } from "../components/progress-bar.js";
import { RateChart } from "../components/rate-chart.js";
import { StreamBadge } from "../components/stream-badge.js";
import { countText, rateText } from "../format.js";
import { useNow, useTableList, useTableStream } from "../hooks.js";
import { AdminPanel, useAdminActions } from "./admin-actions.js";
import { ErrorsView } from "./errors-view.js";
import { EventFeed } from "./event-feed.js";
import { JobsView } from "./jobs-view.js";
import { LeasesView } from "./leases-view.js";
import { etaText } from "./overview.js";

export const TABS = ["events", "jobs", "errors", "leases", "actions"] as const;
export type Tab = (typeof TABS)[number];

export function TablePage({ table, tab }: { table: string; tab: Tab }) {
  // Read again for another table: it may have been declared since the list was read.
  const list = useTableList(table);
  const info = list.tables?.find((t) => t.name === table);
  const problem = list.problem ?? (list.tables !== undefined && info === undefined ? `There is no table "${table}" on this server.` : undefined);
  const stream = useTableStream(table, { countsOnly: false });
  const now = useNow();
  const [reloads, setReloads] = useState(0);
  const actions = useAdminActions(() => setReloads((n) => n + 1));

  const counts = stream.counts;
  const rate = stream.throughput.rate(60_000, now);
  const eta = counts === undefined ? undefined : stream.throughput.eta(counts.remaining, now);
  const attributes = info?.keyAttributes ?? [];
  // Lists re-read on every change of the stream, and after an action.
  const changes = stream.changes + reloads;
  const errorCount = counts?.error ?? 0;

  return (
    <section class="table-page" data-table={table}>
      <div class="section-head">
        <h1>
          <a href="#/" class="back" title="all tables">
            Tables
          </a>{" "}
          / {info?.displayName || table}
        </h1>
        <StreamBadge state={stream.state} />
      </div>
      {problem !== undefined && <p class="notice notice-bad">{problem}</p>}
      {stream.state.kind === "stopped" && <p class="notice notice-bad">The Watch stream stopped: {stream.state.reason}</p>}
      <div class="summary">
        <div class="cards">
          {(["pending", "reserved", "success", "error", "ignore", "target"] as const).map((name) => (
            <div class={`card card-${name}`} key={name} data-count={name}>
              <span class="card-label">{name === "target" ? "computed" : name}</span>
              <span class="card-value">{counts === undefined ? "…" : countText(counts[name])}</span>
            </div>
          ))}
        </div>
        <ProgressBar counts={counts} large />
        <div class="pace">
          <RateChart throughput={stream.throughput} now={now} width={360} height={48} axis />
          <div>
            <div>
              <b>{rateText(rate)}</b> <span class="muted">over the last minute</span>
            </div>
            <div>
              ETA <b data-eta>{counts === undefined ? "…" : etaText(counts.remaining, rate, eta, true)}</b>
              {counts !== undefined && counts.remaining > 0 && <span class="muted"> for {countText(counts.remaining)} remaining</span>}
            </div>
          </div>
        </div>
      </div>
      <nav class="tabs">
        {TABS.map((t) => (
          <a key={t} href={`#/table/${encodeURIComponent(table)}/${t}`} class={t === tab ? "on" : ""} aria-current={t === tab ? "page" : undefined}>
            {t === "errors" ? `errors (${countText(errorCount)})` : t === "leases" ? `leases (${countText(counts?.reserved ?? 0)})` : t}
          </a>
        ))}
      </nav>
      {tab === "events" && <EventFeed events={stream.events} eventCount={stream.eventCount} />}
      {tab === "jobs" && <JobsView table={table} attributes={attributes} changes={changes} actions={actions} />}
      {tab === "errors" && <ErrorsView table={table} attributes={attributes} changes={changes} errorCount={errorCount} actions={actions} />}
      {tab === "leases" && <LeasesView table={table} attributes={attributes} changes={changes} />}
      {tab === "actions" && <AdminPanel table={table} attributes={attributes} errorCount={errorCount} actions={actions} />}
      {tab !== "actions" && actions.view}
    </section>
  );
}
