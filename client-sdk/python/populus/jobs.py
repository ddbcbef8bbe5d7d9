"""``table.jobs``: the jobs table of one table, as DataJoint shows it: views by
status (``pending``, ``reserved``, ``errors``, ``completed``, ``ignored``)
with ``fetch()``, ``len()`` and ``delete()``, plus ``refresh()``, ``ignore()``,
``progress()`` and the live stream ``watch()`` (watch.py)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from populus.config import config
from populus.errors import InvalidArgumentError
from populus.keys import from_proto_key, key_chunks, to_restriction
from populus.refresh import KeySource, RefreshParams, refresh_key_source
from populus.retry import DEFAULT_RETRY, RetryPolicy
from populus.rpc import Connection
from populus.v1 import job_service_pb2, types_pb2
from populus.watch import Watch, progress_counts
from populus.wire import datetime_of, seconds_of

STATUS_NAMES = {
    types_pb2.JOB_STATUS_PENDING: "pending",
    types_pb2.JOB_STATUS_RESERVED: "reserved",
    types_pb2.JOB_STATUS_SUCCESS: "success",
    types_pb2.JOB_STATUS_ERROR: "error",
    types_pb2.JOB_STATUS_IGNORE: "ignore",
}


def job_record(job: types_pb2.Job) -> dict[str, Any]:
    """A job of a ListJobs answer as a dict (times as UTC datetimes, None when unset)."""
    return {
        "key": from_proto_key(job.key),
        "status": STATUS_NAMES.get(job.status, "pending"),
        "priority": job.priority,
        "create_time": datetime_of(job, "create_time"),
        "scheduled_time": datetime_of(job, "scheduled_time"),
        "reserve_time": datetime_of(job, "reserve_time"),
        "complete_time": datetime_of(job, "complete_time"),
        "duration": seconds_of(job, "duration"),
        "lease_expire_time": datetime_of(job, "lease_expire_time"),
        "host": job.worker.host,
        "pid": job.worker.pid,
        "user": job.worker.user,
        "worker_id": job.worker.worker_id,
        "code_version": job.worker.code_version,
        "attempts": job.attempts,
        "error_message": job.error_message,
        "error_stack": job.error_stack,
        "progress": job.progress,
        "progress_message": job.progress_message,
    }


def progress_of(connection: Connection, table: str) -> dict[str, int]:
    """GetProgress as a dict of counts."""
    return progress_counts(connection.call("GetProgress", job_service_pb2.GetProgressRequest(table=table)).progress)


class JobsView:
    """The jobs of one status."""

    def __init__(self, connection: Connection, table: str, status: int, count_name: str) -> None:
        self._connection = connection
        self._table = table
        self._status = status
        self._count_name = count_name

    def fetch(self, restriction: Mapping[str, Any] | None = None, max_priority: int | None = None) -> list[dict[str, Any]]:
        """Every job of this status (every page), in reservation order (priority, scheduled time, id)."""
        out: list[dict[str, Any]] = []
        page_token = ""
        while True:
            request = job_service_pb2.ListJobsRequest(
                table=self._table, statuses=[self._status], restriction=to_restriction(restriction), page_size=1000, page_token=page_token
            )
            if max_priority is not None:
                request.max_priority = max_priority
            page = self._connection.call("ListJobs", request)
            out.extend(job_record(job) for job in page.jobs)
            page_token = page.next_page_token
            if not page_token:
                return out

    def __len__(self) -> int:
        """How many jobs have this status (``len(table.jobs.errors)``)."""
        return progress_of(self._connection, self._table)[self._count_name]

    def count(self) -> int:
        """The same as ``len(view)``."""
        return len(self)

    def delete(self, keys: Iterable[Mapping[str, Any]] | None = None) -> int:
        """Deletes the jobs of this status (all, or only those of ``keys``: an
        empty list deletes none); answers how many."""
        if keys is None:
            request = job_service_pb2.DeleteJobsRequest(table=self._table, statuses=[self._status])
            return self._connection.call("DeleteJobs", request).deleted
        return sum(
            self._connection.call("DeleteJobs", job_service_pb2.DeleteJobsRequest(table=self._table, statuses=[self._status], keys=chunk)).deleted
            for chunk in key_chunks(keys)
        )

    def __repr__(self) -> str:
        return f"<jobs of {self._table} with status {STATUS_NAMES[self._status]}>"


def _seconds(name: str, v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise InvalidArgumentError(f"jobs.refresh: {name} must be a number of seconds >= 0, got {v!r}")
    return float(v)


class Jobs:
    """``table.jobs``."""

    def __init__(self, connection: Connection, table: str, key_source: KeySource) -> None:
        self._connection = connection
        self._table = table
        self._key_source = key_source
        self.pending = JobsView(connection, table, types_pb2.JOB_STATUS_PENDING, "pending")
        """Jobs waiting to be reserved."""
        self.reserved = JobsView(connection, table, types_pb2.JOB_STATUS_RESERVED, "reserved")
        """Jobs leased to a worker."""
        self.errors = JobsView(connection, table, types_pb2.JOB_STATUS_ERROR, "error")
        """Failed jobs; ``errors.delete()`` lets the next refresh queue them again."""
        self.completed = JobsView(connection, table, types_pb2.JOB_STATUS_SUCCESS, "success")
        """Kept success jobs (only with ``config.jobs.keep_completed``)."""
        self.ignored = JobsView(connection, table, types_pb2.JOB_STATUS_IGNORE, "ignore")
        """Jobs marked to skip."""

    def refresh(
        self,
        priority: int | None = None,
        delay: float | None = None,
        stale_timeout: float | None = None,
        orphan_timeout: float | None = None,
    ) -> dict[str, int]:
        """Syncs the jobs with the key source (promise 4): adds ``key source −
        target − jobs`` as pending (at ``priority``, default
        ``config.jobs.default_priority``, not before ``delay`` seconds), removes
        jobs older than ``stale_timeout`` (default ``config.jobs.stale_timeout``)
        whose key left the key source, re-pends kept success jobs whose key left
        the target, and resets jobs reserved longer ago than ``orphan_timeout``.
        Answers ``{"added", "removed", "orphaned", "re_pended"}``."""
        settings = config.jobs
        orphan = _seconds("orphan_timeout", orphan_timeout)
        stale = _seconds("stale_timeout", stale_timeout)
        wait = _seconds("delay", delay)
        p = settings.default_priority if priority is None else priority
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 255:
            raise InvalidArgumentError(f"jobs.refresh: priority must be an integer from 0 to 255, got {p!r}")
        return refresh_key_source(
            self._connection,
            self._table,
            self._key_source,
            RefreshParams(priority=p, stale_timeout=settings.stale_timeout if stale is None else stale, orphan_timeout=orphan, delay=wait or 0),
        )

    def ignore(self, keys: Iterable[Mapping[str, Any]]) -> int:
        """Marks keys to skip; answers how many jobs were set to ignore."""
        return sum(
            self._connection.call("Ignore", job_service_pb2.IgnoreRequest(table=self._table, keys=chunk)).ignored for chunk in key_chunks(keys)
        )

    def progress(self) -> dict[str, int]:
        """The table's counts: ``{"pending", "reserved", "success", "error", "ignore", "target", "remaining"}``."""
        return progress_of(self._connection, self._table)

    def watch(self, cursor: str | None = None, counts_only: bool = False, retry: RetryPolicy = DEFAULT_RETRY) -> Watch:
        """The live stream of the table's counts and job events (the server's
        Watch) as an iterator of updates ``{"cursor", "progress", "events"}``.
        The first update is a snapshot of the counts (no events); each later
        one carries the job changes since, in commit order, and the counts
        after them (``progress`` is the latest counts: None until the first
        counts arrive, as in the catch-up updates of a resume).
        A stream cut by the network or a server restart reconnects by itself
        and resumes after the last update, so no event is missed or repeated;
        ``watch(cursor=update["cursor"])`` resumes after an earlier update.
        It never ends on its own: ``close()`` it, or use it in a ``with``."""
        return Watch(self._connection, self._table, cursor or "", counts_only, retry)
