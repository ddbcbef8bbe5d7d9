/** The live event feed of a table: each job change its Watch stream brings, newest first. */
import type { JobEvent } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import { JobStatus } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { clockText, countText, fullTimeText, timeMs } from "../format.js";
import type { SeenEvent } from "../hooks.js";
import { keyText } from "../keys.js";

/** What happened, in a word: the status a job reached, or "committed" when its row left with a result. */
function eventWord(e: JobEvent): string {
  switch (e.status) {
    case JobStatus.RESERVED:
      return "reserved";
    case JobStatus.PENDING:
      return "back to pending";
    case JobStatus.SUCCESS:
      return "success";
    case JobStatus.ERROR:
      return "error";
    case JobStatus.IGNORE:
      return "ignored";
    default:
      return e.committed ? "committed" : "deleted";
  }
}

export function EventFeed({ events, eventCount }: { events: readonly SeenEvent[]; eventCount: number }) {
  return (
    <div class="panel">
      <p class="muted">
        {countText(eventCount)} event{eventCount === 1 ? "" : "s"} since this view opened
        {eventCount > events.length ? `; the newest ${countText(events.length)} are shown` : ""}. Refreshes, deletions and ignores of many keys change
        the counts only.
      </p>
      <table class="grid feed">
        <thead>
          <tr>
            <th>time</th>
            <th>event</th>
            <th>key</th>
            <th>worker</th>
            <th>message</th>
          </tr>
        </thead>
        <tbody>
          {events.map(({ seq, event }) => {
            const word = eventWord(event);
            const at = timeMs(event.time);
            return (
              <tr key={seq} class={`event event-${word.replace(/ /g, "-")}`} data-event={word}>
                <td title={fullTimeText(at)}>{clockText(at)}</td>
                <td>
                  <span class={`status status-${word.replace(/ /g, "-")}`}>{word}</span>
                </td>
                <td>
                  <code>{keyText(event.key)}</code>
                </td>
                <td class="small">{event.workerId}</td>
                <td class="message">{event.errorMessage}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {events.length === 0 && <p class="muted">Waiting for the next change…</p>}
    </div>
  );
}
