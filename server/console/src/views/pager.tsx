/** Previous / next under a paged list. */
import type { JobsPage } from "../jobs-page.js";

export function Pager({ page }: { page: JobsPage }) {
  return (
    <div class="pager">
      <button type="button" disabled={page.pageNumber === 1} onClick={page.previous}>
        ← previous
      </button>
      <span>page {page.pageNumber}</span>
      <button type="button" disabled={!page.hasNext} onClick={page.next}>
        next →
      </button>
    </div>
  );
}
