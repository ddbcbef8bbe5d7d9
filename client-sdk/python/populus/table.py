"""A table: an auto-populated table of one server, with its key source and
make, its computed rows (``fetch``, ``delete``), its jobs (``jobs``),
``populate`` and ``wait_for_work`` (an idle worker's wait between populates)."""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping

from populus.claimed_refresh import RefreshClaim, WorkFound, wait_for_work
from populus.config import MAX_REFRESH_INTERVAL_S, config
from populus.errors import InvalidArgumentError
from populus.graceful_stop import GracefulStop
from populus.jobs import Jobs
from populus.keys import from_proto_key, key_chunks, to_restriction
from populus.populate import GRACE_S, populate
from populus.refresh import KeySource
from populus.reserve_loop import LEASE_DURATION_S, Make
from populus.rpc import Connection
from populus.v1 import job_service_pb2
from populus.wire import datetime_of

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

DEFAULT_WAIT_REFRESH_INTERVAL_S = 30.0
"""wait_for_work's refresh_interval where config.jobs.refresh_interval is 0:
``python -m populus.worker``'s default."""


class Table:
    """An auto-populated table. Made by ``db.table(name, key_source=..., make=...)``."""

    def __init__(self, connection: Connection, name: str, key_source: KeySource, make: Make) -> None:
        if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
            raise InvalidArgumentError(f'table name "{name}": use letters, digits and underscores (at most 64), e.g. ProcessedData')
        if not callable(make):
            raise InvalidArgumentError(f"table {name}: make must be a function make(key, ctx) returning the result dict")
        if key_source is None:
            raise InvalidArgumentError(f"table {name}: key_source is required (an iterable of key dicts, or a function returning one)")
        self.name = name
        """The name as given, e.g. "ProcessedData" (the server stores processed_data)."""
        self.key_source = key_source
        self.make = make
        self.connection = connection
        self.jobs = Jobs(connection, name, key_source)
        """Its jobs table."""
        self.refresh_claim = RefreshClaim()
        """The table's refresh claim in this process (claimed_refresh.py): one
        id for every populate of this Table object."""

    def populate(
        self,
        reserve_jobs: bool = False,
        processes: int = 1,
        max_calls: int | None = None,
        suppress_errors: bool = False,
        priority: int | None = None,
        refresh: bool | None = None,
        display_progress: bool = False,
        *,
        restriction: Mapping[str, Any] | None = None,
        refresh_interval: float | None = None,
        lease_duration: float = LEASE_DURATION_S,
        grace: float = GRACE_S,
        stop: GracefulStop | None = None,
        handle_signals: bool = True,
    ) -> dict[str, Any]:
        """Computes the keys of the key source that are not in the target yet,
        with DataJoint's options, and answers ``{"success_count": n,
        "error_list": [(key, message), ...]}``.

        - ``reserve_jobs``: False computes key source − target in this call
          (results still commit through the server); True coordinates with every
          other worker through the server's jobs table.
        - ``processes``: OS processes (multiprocessing, "spawn"), each with its
          own connection and heartbeat thread; 1 runs here.
        - ``max_calls``: most make calls in all, shared among the processes.
        - ``suppress_errors``: False records the first failure as an error job,
          stops the other processes and raises MakeError; True goes on and
          collects failures in ``error_list``.
        - ``priority``: only jobs at this priority or more urgent (lower numbers).
        - ``refresh``: refresh the jobs from the key source first (default
          ``config.jobs.auto_refresh``); without ``reserve_jobs`` always. With
          ``reserve_jobs`` the refresh is coordinated across every worker: it
          is skipped, and populate goes straight to reserving, while another
          populate's refresh of the table runs (in this process or on any
          other worker), or when one finished less than ``refresh_interval``
          seconds ago. Held back by a running refresh of a table with nothing
          pending yet (a new table, or new keys upstream), populate waits for
          that refresh to end and then reserves its share (a stop ends the
          wait).
        - ``display_progress``: a line on stderr every 2 s and at the end.
        - ``restriction``: only keys with these attribute values.
        - ``refresh_interval``: seconds (0 to 86400) within which a finished
          refresh of the table (by any populate with ``reserve_jobs``) is not
          repeated (default ``config.jobs.refresh_interval``, 0: only a
          refresh that is running holds this one back).
        - ``lease_duration``: seconds (1 to 86400); a crashed worker's jobs come
          back this long after its last heartbeat.
        - ``grace``, ``stop``, ``handle_signals``: on SIGTERM/SIGINT (while
          populate runs in the main thread and the application installed no
          handler of its own), or when ``stop.stop(grace)`` is called, nothing
          more is reserved, running makes may finish and commit for ``grace``
          seconds, then their ``ctx.signal`` fires and every held lease is
          released without charging an attempt; populate then returns what
          was done. A second signal raises KeyboardInterrupt at once (held
          leases are released first).
        """
        return populate(
            self,
            reserve_jobs=reserve_jobs,
            processes=processes,
            max_calls=max_calls,
            suppress_errors=suppress_errors,
            priority=priority,
            refresh=refresh,
            restriction=restriction,
            refresh_interval=refresh_interval,
            lease_duration=lease_duration,
            grace=grace,
            display_progress=display_progress,
            stop=stop,
            signals=handle_signals,
        )

    def wait_for_work(self, wait: float = 60, refresh_interval: float | None = None, stop: GracefulStop | None = None) -> WorkFound:
        """Waits, as an idle worker does between passes of populate, until the
        table has work: "jobs" when a job is pending, "refresh" when its
        refresh is due (none within ``refresh_interval`` seconds, none
        running), whose claim this process then holds for its next populate;
        None when ``wait`` seconds (0 to 86400) passed without either or
        ``stop`` stopped. ClaimRefresh long-polls of up to a minute each: no
        call while nothing changes, and an answer as soon as something does.
        With ``config.jobs.auto_refresh`` off (populate does not refresh) it
        takes no claim, and reads the table's counts every 10 s instead.

        ``refresh_interval`` is populate's, more than 0 and at most 86400
        (default ``config.jobs.refresh_interval``, or 30 where that is 0; with
        0 a refresh would always be due, and the wait would end at once).
        ``stop``: the GracefulStop given to populate too; ``stop.stop(grace)``
        cancels the call in flight and answers None at once. A claim granted
        to a wait whose populate never comes lapses after a minute.
        """
        if not _is_seconds(wait, 0, 86_400):
            raise InvalidArgumentError(f"{self.name}.wait_for_work: wait must be from 0 to 86400 seconds, got {wait!r}")
        if refresh_interval is None:
            interval = float(config.jobs.refresh_interval) if config.jobs.refresh_interval > 0 else DEFAULT_WAIT_REFRESH_INTERVAL_S
        elif _is_seconds(refresh_interval, 0, MAX_REFRESH_INTERVAL_S) and refresh_interval > 0:
            interval = float(refresh_interval)
        else:
            raise InvalidArgumentError(
                f"{self.name}.wait_for_work: refresh_interval must be more than 0 and at most {MAX_REFRESH_INTERVAL_S} seconds "
                f"(with 0 a refresh is always due, and the wait would end at once), got {refresh_interval!r}"
            )
        return wait_for_work(
            self.connection, self.name, self.refresh_claim, interval, float(wait), stop, refresh=bool(config.jobs.auto_refresh)
        )

    def fetch(self, restriction: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every computed row: ``{"key", "result", "complete_time"}`` dicts."""
        out: list[dict[str, Any]] = []
        page_token = ""
        while True:
            page = self.connection.call(
                "ListTargets",
                job_service_pb2.ListTargetsRequest(table=self.name, restriction=to_restriction(restriction), page_size=1000, page_token=page_token),
            )
            for row in page.rows:
                out.append({"key": from_proto_key(row.key), "result": _plain(row.result), "complete_time": datetime_of(row, "complete_time")})
            page_token = page.next_page_token
            if not page_token:
                return out

    def delete(self, keys: Iterable[Mapping[str, Any]] | None = None, *, all: bool = False) -> int:
        """Deletes computed rows so their keys are computed again after the next
        refresh: those of ``keys``, or every row with ``all=True``. Answers how many."""
        if all:
            if keys is not None:
                raise InvalidArgumentError(f"{self.name}.delete: pass keys or all=True, not both")
            return self.connection.call("DeleteTargets", job_service_pb2.DeleteTargetsRequest(table=self.name, all=True)).deleted
        if keys is None:
            raise InvalidArgumentError(f"{self.name}.delete: pass a list of keys, or all=True")
        return sum(
            self.connection.call("DeleteTargets", job_service_pb2.DeleteTargetsRequest(table=self.name, keys=chunk)).deleted
            for chunk in key_chunks(keys)
        )

    def __repr__(self) -> str:
        return f"<populus table {self.name} at {self.connection.options.url}>"


def _is_seconds(v: Any, low: float, high: float) -> bool:
    """A number of seconds from ``low`` to ``high`` (not a bool, nan or a string)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high


def _plain(struct: Any) -> dict[str, Any]:
    """A Struct as plain Python: whole numbers come back as ints (JSON has one number type)."""
    from google.protobuf.json_format import MessageToDict

    def ints(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
            return int(v)
        if isinstance(v, dict):
            return {k: ints(x) for k, x in v.items()}
        if isinstance(v, list):
            return [ints(x) for x in v]
        return v

    return ints(MessageToDict(struct))
