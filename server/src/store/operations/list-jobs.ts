/**
 * ListJobs and ListTargets: keyset pages.
 */
import { JOB_COLUMNS, type JobRow, jobPage, parseJobCursor, type TargetRow, targetPage } from "../row-mapping.js";
import type { JobFilter, JobRecord, Page, PageRequest, StoredTarget } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import { type Operation, placeholders, rows, sql } from "./operation.js";

/**
 * A page of jobs in reservation order, keyset-paged on (priority, scheduled_time, id), the ready
 * index's columns, each with its lease's holder (JOB_COLUMNS). Columns named alone are the jobs
 * table's: the lease rows have none of those names.
 */
export function* listJobs(d: SqlDialect, table: string, filter: JobFilter, page: PageRequest): Operation<Page<JobRecord>> {
  const r = d.restriction(filter.restriction);
  const found = yield* rows<JobRow>(
    sql(
      `SELECT ${JOB_COLUMNS} FROM ${d.jobsTable(table)} j LEFT JOIN ${d.names.leases} l ON l.batch = j.lease_batch
       WHERE (priority, scheduled_time, id) > (?, ?, ?)${filter.statuses.length > 0 ? ` AND status IN (${placeholders(filter.statuses.length)})` : ""}${
         filter.maxPriority === null ? "" : " AND priority <= ?"
       }${r.sql}
       ORDER BY priority, scheduled_time, id LIMIT ?`,
      [...parseJobCursor(page.after), ...filter.statuses, ...(filter.maxPriority === null ? [] : [filter.maxPriority]), ...r.params, page.pageSize + 1],
    ),
  );
  return jobPage(found, page.pageSize);
}

/** A page of a target's rows, by key hash. */
export function* listTargets(d: SqlDialect, table: string, restriction: JobFilter["restriction"], page: PageRequest): Operation<Page<StoredTarget>> {
  const r = d.restriction(restriction);
  const found = yield* rows<TargetRow>(
    sql(
      `SELECT key_hash, key_json, result_json, complete_time FROM ${d.targetTable(table)}
       WHERE key_hash > ?${r.sql} ORDER BY key_hash LIMIT ?`,
      [page.after ?? "", ...r.params, page.pageSize + 1],
    ),
  );
  return targetPage(found, page.pageSize);
}
