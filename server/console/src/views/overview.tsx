/**
 * Every table at a glance: live counts by status, a progress bar, jobs/s over the last five
 * minutes and an ETA, each row following its table's counts-only Watch stream.
 */
import type { TableInfo } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { useState } from "preact/hooks";
import { ProgressBar } from "../components/progress-bar.js";
import { RateChart } from "../components/rate-chart.js";
import { StreamBadge } from "../components/stream-badge.js";
import { countText, rateText, spanText } from "../format.js";
import { countsOf, useNow, useTableList, useTableStream } from "../hooks.js";

/**
 * Streams the overview keeps open at once. Over plain HTTP a browser speaks HTTP/1.1 and opens
 * at most 6 connections per server, each open stream holding one: 4 leave room for the page's
 * other calls (and a second tab). Over TLS the browser speaks HTTP/2, one connection for all.
 */
export const LIVE_ROWS = location.protocol === "https:" ? 48 : 4;

export function Overview() {
  const [reloads, setReloads] = useState(0);
  const { tables, problem } = useTableList(reloads);

  return (
    <section>
      <div class="section-head">
        <h1>Tables</h1>
        <button type="button" onClick={() => setReloads((n) => n + 1)} title="read the list of tables again (new tables appear here)">
          Reload list
        </button>
      </div>
      {problem !== undefined && <p class="notice notice-bad">{problem}</p>}
      {tables === undefined && problem === undefined && <p class="muted">Loading tables…</p>}
      {tables !== undefined && tables.length === 0 && (
        <p class="muted">No tables yet: a table appears once a pipeline refreshes it (populate does, or jobs.refresh()).</p>
      )}
      {tables !== undefined && tables.length > 0 && (
        <table class="grid overview">
          <thead>
            <tr>
              <th>table</th>
              <th class="num">pending</th>
              <th class="num">reserved</th>
              <th class="num">success</th>
              <th class="num">error</th>
              <th class="num">ignore</th>
              <th class="num">computed</th>
              <th>progress</th>
              <th>jobs/s, last 5 min</th>
              <th>ETA</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {tables.map((t, i) => (
              <OverviewRow key={t.name} info={t} live={i < LIVE_ROWS} />
            ))}
          </tbody>
        </table>
      )}
      {tables !== undefined && tables.length > 0 && <Legend />}
      {tables !== undefined && tables.length > LIVE_ROWS && (
        <p class="muted">
          Rows after the first {LIVE_ROWS} show the counts read when the list was loaded: over plain HTTP a browser opens at most 6 connections to a server, and
          each live row holds one. Open a table to follow it, or serve TLS (HTTP/2) to follow every row.
        </p>
      )}
    </section>
  );
}

/** What the bar's colours mean. */
export function Legend() {
  return (
    <p class="legend muted small">
      <span class="swatch seg-target" /> computed <span class="swatch seg-error" /> error <span class="swatch seg-ignore" /> ignored{" "}
      <span class="swatch seg-reserved" /> reserved <span class="swatch swatch-pending" /> pending · jobs/s counts results committed and makes failed, in 10 s bars
      since this tab began watching
    </p>
  );
}

function OverviewRow({ info, live }: { info: TableInfo; live: boolean }) {
  const stream = useTableStream(info.name, { countsOnly: true, enabled: live });
  const now = useNow();
  const counts = stream.counts ?? countsOf(info.progress);
  const rate = live ? stream.throughput.rate(60_000, now) : undefined;
  const eta = live ? stream.throughput.eta(counts.remaining, now) : undefined;
  const cell = (name: keyof typeof counts, n: number) => (
    <td class={`num count-${name}${n > 0 ? " nonzero" : ""}`} data-count={name}>
      {countText(n)}
    </td>
  );
  return (
    <tr data-table={info.name}>
      <td>
        <a href={`#/table/${encodeURIComponent(info.name)}`}>{info.displayName || info.name}</a>
        {info.displayName !== "" && info.displayName !== info.name && <div class="muted small">{info.name}</div>}
      </td>
      {cell("pending", counts.pending)}
      {cell("reserved", counts.reserved)}
      {cell("success", counts.success)}
      {cell("error", counts.error)}
      {cell("ignore", counts.ignore)}
      {cell("target", counts.target)}
      <td class="bar-cell">
        <ProgressBar counts={counts} />
      </td>
      <td>
        {live ? (
          <div class="rate">
            <RateChart throughput={stream.throughput} now={now} />
            <span class="rate-text">{rateText(rate)}</span>
          </div>
        ) : (
          <span class="muted">not followed</span>
        )}
      </td>
      <td class="eta">{etaText(counts.remaining, rate, eta, live)}</td>
      <td>{live ? <StreamBadge state={stream.state} /> : <span class="badge badge-wait">as loaded</span>}</td>
    </tr>
  );
}

/** "done", "3 min 10 s", or why there is no estimate: too little seen yet ("…"), or nothing finishing ("idle"). */
export function etaText(remaining: number, rate: number | undefined, eta: number | undefined, live: boolean): string {
  if (remaining === 0) return "done";
  if (!live) return "";
  if (rate === undefined) return "…";
  if (eta === undefined) return "idle";
  return spanText(eta);
}
