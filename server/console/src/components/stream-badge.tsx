/** A followed stream's state as a small badge: live, connecting, reconnecting (with why), stopped. */
import type { StreamState } from "../follow-watch.js";

export function StreamBadge({ state }: { state: StreamState }) {
  switch (state.kind) {
    case "live":
      return (
        <span class="badge badge-live" title="following the table's Watch stream">
          live
        </span>
      );
    case "connecting":
      return <span class="badge badge-wait">connecting</span>;
    case "reconnecting":
      return (
        <span class="badge badge-warn" title={state.reason}>
          reconnecting
        </span>
      );
    case "stopped":
      return (
        <span class="badge badge-bad" title={state.reason}>
          stopped
        </span>
      );
  }
}
