"""``table.populate(...)``: DataJoint's populate over Populus, as the
TypeScript SDK's populate.ts.

- ``reserve_jobs=True``: refresh (when ``refresh``, default
  ``config.jobs.auto_refresh``), then reserve loops, in this process or in
  ``processes`` child processes that each open their own connection. The
  refresh is coordinated across every worker (claimed_refresh.py): it is
  skipped, and populate goes straight to reserving, while another populate's
  refresh of the table runs (here or anywhere), or when one finished less
  than ``refresh_interval`` seconds ago. Held back by a running refresh of a
  table with nothing pending yet (a new table, or new keys upstream), it
  waits, up to 30 s, until that refresh has queued jobs or ended, so that
  workers started together share the new work; past 30 s, or on a stop
  (``stop``, or SIGTERM/SIGINT), it returns with nothing done.
- ``reserve_jobs=False`` (DataJoint's default): always refresh the key
  source, then the same reserve loop. The server is the only writer of
  targets (which is what makes commits exactly-once), so this mode commits
  through leases too.

When the refresh (or the server, for a populate held back from refreshing)
says that the table has no pending job, populate reserves nothing and
answers at once.

Child processes are started with multiprocessing's "spawn" method (gRPC's
C core does not survive fork once a channel is open): each child imports the
module that defines make, so make must be a module-level function of an
importable module (or of the main script, guarded by
``if __name__ == "__main__":``, as multiprocessing asks).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue as queue_module
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from populus.claimed_refresh import claimed_refresh
from populus.config import MAX_REFRESH_INTERVAL_S, ConnectOptions, config
from populus.errors import InvalidArgumentError, MakeError, TableNotFoundError, UnavailableError, WorkerProcessError
from populus.graceful_stop import GracefulStop, handle_signals
from populus.keys import to_restriction
from populus.progress_display import ProgressDisplay
from populus.refresh import RefreshParams, refresh_outcome
from populus.reserve_loop import LEASE_DURATION_S, LoopOptions, Make, run_reserve_loop
from populus.rpc import Connection
from populus.v1 import job_service_pb2, types_pb2
from populus.worker_identity import worker_identity

if TYPE_CHECKING:
    from populus.table import Table

GRACE_S = 30.0
"""Default of populate's ``grace``, seconds."""


@dataclass(frozen=True)
class _Resolved:
    reserve_jobs: bool
    processes: int
    max_calls: int | None
    suppress_errors: bool
    priority: int | None
    refresh: bool
    refresh_interval: float
    restriction: Mapping[str, Any] | None
    lease_duration: float
    grace: float


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_seconds(v: Any, low: float, high: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high


def _resolve(table: str, settings: dict[str, Any], **o: Any) -> _Resolved:
    def bad(what: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"{table}.populate: {what}")

    if not _is_int(o["processes"]) or o["processes"] < 1:
        raise bad(f"processes must be an integer >= 1, got {o['processes']!r}")
    if o["max_calls"] is not None and (not _is_int(o["max_calls"]) or o["max_calls"] < 0):
        raise bad(f"max_calls must be an integer >= 0 or None, got {o['max_calls']!r}")
    if o["priority"] is not None and (not _is_int(o["priority"]) or not 0 <= o["priority"] <= 255):
        raise bad(f"priority must be an integer from 0 to 255 or None, got {o['priority']!r}")
    if not _is_seconds(o["lease_duration"], 1, 86_400):
        raise bad(f"lease_duration must be from 1 to 86400 seconds, got {o['lease_duration']!r}")
    if o["refresh_interval"] is not None and not _is_seconds(o["refresh_interval"], 0, MAX_REFRESH_INTERVAL_S):
        raise bad(f"refresh_interval must be from 0 to {MAX_REFRESH_INTERVAL_S} seconds, got {o['refresh_interval']!r}")
    if not _is_seconds(o["grace"], 0, 86_400):
        raise bad(f"grace must be from 0 to 86400 seconds, got {o['grace']!r}")
    if o["restriction"] is not None:
        to_restriction(o["restriction"])  # InvalidArgumentError naming the attribute
    return _Resolved(
        reserve_jobs=bool(o["reserve_jobs"]),
        processes=o["processes"],
        max_calls=o["max_calls"],
        suppress_errors=bool(o["suppress_errors"]),
        priority=o["priority"],
        refresh=settings["auto_refresh"] if o["refresh"] is None else bool(o["refresh"]),
        refresh_interval=float(settings["refresh_interval"] if o["refresh_interval"] is None else o["refresh_interval"]),
        restriction=o["restriction"],
        lease_duration=float(o["lease_duration"]),
        grace=float(o["grace"]),
    )


def populate(table: Table, *, display_progress: bool = False, stop: GracefulStop | None = None, signals: bool = True, **options: Any) -> dict[str, Any]:
    """Runs populate for ``table``; see Table.populate."""
    settings = config.jobs.snapshot()
    o = _resolve(table.name, settings, **options)
    graceful = stop if stop is not None else GracefulStop()
    params = RefreshParams(priority=settings["default_priority"], stale_timeout=settings["stale_timeout"], orphan_timeout=None, delay=0)
    # Whether a job is pending, when the refresh (or the server, holding this refresh back) said so.
    any_pending: bool | None = None
    if not o.reserve_jobs:
        # Direct mode computes what its own key source says is missing: always read.
        any_pending = refresh_outcome(table.connection, table.name, table.key_source, params).any_pending
    elif o.refresh:
        # A stop ends its wait for another's refresh; signals stop it there as they do the reserve loop.
        any_pending = claimed_refresh(
            table.connection, table.name, table.key_source, params, table.refresh_claim, o.refresh_interval, graceful, grace=o.grace, signals=signals
        ).any_pending
    display = ProgressDisplay(table.name, table.jobs.progress) if display_progress else None
    if display is not None:
        display.start()
    try:
        # A table with nothing pending (already done, or an idle worker's pass): no Reserve to find that out.
        if any_pending is False:
            return {"success_count": 0, "error_list": []}
        with handle_signals(graceful, o.grace, signals):
            processes = o.processes if o.max_calls is None else max(1, min(o.processes, o.max_calls))
            if processes == 1:
                result = run_reserve_loop(_loop_options(table.connection, table.name, table.make, o, o.max_calls, settings, graceful))
                if result.failure is not None:
                    raise MakeError(*result.failure)
                return {"success_count": result.success_count, "error_list": result.error_list}
            return _run_children(table, o, processes, settings, graceful)
    finally:
        if stop is None:
            graceful.dispose()
        if display is not None:
            display.finish()


def _loop_options(
    connection: Connection, table: str, make: Make, o: _Resolved, max_calls: int | None, settings: dict[str, Any], graceful: GracefulStop, **extra: Any
) -> LoopOptions:
    return LoopOptions(
        connection=connection,
        table=table,
        make=make,
        identity=worker_identity(settings["version_method"]),
        max_calls=max_calls,
        priority=o.priority,
        restriction=o.restriction,
        suppress_errors=o.suppress_errors,
        keep_completed=settings["keep_completed"],
        lease_duration=o.lease_duration,
        stop=graceful,
        **extra,
    )


@dataclass(frozen=True)
class _ChildStart:
    """What a child process is started with (pickled; make by reference)."""

    connect: ConnectOptions
    table: str
    make: Make
    options: _Resolved
    max_calls: int | None
    settings: dict[str, Any]


def _child_main(start: _ChildStart, stop_event: Any, cancel_event: Any, results: Any) -> None:
    """A child process: its own connection, heartbeat thread and reserve loop.
    Reports ("failure", ...) at once and ("done", ...) or ("fatal", ...) at the end."""
    graceful = GracefulStop()
    connection = Connection(start.connect)

    def follow_parent() -> None:
        # The parent's stop arrives as these events (a SIGTERM to the parent alone, as `docker stop` sends).
        stop_event.wait()
        graceful.stop(0 if cancel_event.is_set() else start.options.grace)
        cancel_event.wait()
        graceful.cancel()

    threading.Thread(target=follow_parent, daemon=True).start()
    try:
        # A SIGINT reaches every process of the group (Ctrl-C): the child stops with the same grace.
        with handle_signals(graceful, start.options.grace):
            result = run_reserve_loop(
                _loop_options(
                    connection,
                    start.table,
                    start.make,
                    start.options,
                    start.max_calls,
                    start.settings,
                    graceful,
                    on_failure=lambda key, message: results.put(("failure", os.getpid(), key, message)),
                )
            )
        results.put(("done", os.getpid(), result.success_count, result.error_list))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("fatal", os.getpid(), type(err).__name__, str(err)))
    finally:
        graceful.dispose()
        connection.close()


def _any_pending(table: Table, o: _Resolved) -> bool:
    """Whether ``table`` has a pending job populate may reserve (by priority and restriction)."""
    request = job_service_pb2.ListJobsRequest(
        table=table.name, statuses=[types_pb2.JOB_STATUS_PENDING], restriction=to_restriction(o.restriction), page_size=1
    )
    if o.priority is not None:
        request.max_priority = o.priority
    try:
        return len(table.connection.call("ListJobs", request).jobs) > 0
    except TableNotFoundError:
        return False


def _run_children(table: Table, o: _Resolved, processes: int, settings: dict[str, Any], graceful: GracefulStop) -> dict[str, Any]:
    """Runs the reserve loop in ``processes`` spawned child processes and sums their results."""
    # No child starts for an empty queue, as DataJoint's populate starts no pool for no keys.
    if not _any_pending(table, o):
        return {"success_count": 0, "error_list": []}
    try:
        pickle.dumps(table.make)
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        raise WorkerProcessError(
            f"{table.name}.populate(processes={processes}): make cannot be sent to a child process ({err}); "
            "define make as a module-level function of an importable module"
        ) from None
    ctx = multiprocessing.get_context("spawn")
    stop_event, cancel_event, results = ctx.Event(), ctx.Event(), ctx.Queue()

    def stop_all(grace: float) -> None:
        if grace <= 0:
            cancel_event.set()
        stop_event.set()

    remove_on_cancel = graceful.on_cancel(lambda: (cancel_event.set(), stop_event.set()))
    children = []
    for i in range(processes):
        # Each child's share of max_calls: the remainder goes to the first ones.
        share = None if o.max_calls is None else o.max_calls // processes + (1 if i < o.max_calls % processes else 0)
        start = _ChildStart(table.connection.options, table.name, table.make, o, share, settings)
        child = ctx.Process(target=_child_main, args=(start, stop_event, cancel_event, results), name=f"populus-{table.name}-{i}")
        child.start()
        children.append(child)

    done: dict[int, tuple[int, list]] = {}
    fatal: tuple[str, str] | None = None
    first_failure: tuple[dict, str] | None = None
    stop_forwarded = False

    def receive(message: tuple) -> None:
        nonlocal fatal, first_failure
        kind, pid = message[0], message[1]
        if kind == "done":
            done[pid] = (message[2], message[3])
        elif kind == "fatal":
            fatal = fatal or (message[2], message[3])
            stop_all(0)
        elif kind == "failure" and first_failure is None:
            first_failure = (message[2], message[3])
            if not o.suppress_errors:
                # The others stop at once, as DataJoint's populate raises at the first error.
                stop_all(0)

    try:
        while any(c.is_alive() for c in children):
            if graceful.stopping.is_set() and not stop_forwarded:
                stop_forwarded = True
                stop_all(0 if graceful.cancelled.is_set() else o.grace)
            try:
                receive(results.get(timeout=0.2))
            except queue_module.Empty:
                pass
        # A child exits only once its queue has been flushed: what it sent is readable now.
        while True:
            try:
                receive(results.get(timeout=0.1))
            except queue_module.Empty:
                break
    except BaseException:
        # KeyboardInterrupt here (a second signal): the children got it too, or get the stop now.
        stop_all(0)
        for c in children:
            c.join(timeout=30)
        raise
    finally:
        remove_on_cancel()
        for c in children:
            c.join(timeout=5)
        results.close()

    if fatal is not None:
        if fatal[0] == "UnavailableError":
            raise UnavailableError(fatal[1])
        raise WorkerProcessError(f"a populate child process of {table.name} failed: {fatal[0]}: {fatal[1]}")
    if first_failure is not None and not o.suppress_errors:
        raise MakeError(*first_failure)
    lost = [c for c in children if c.pid not in done]
    if lost:
        raise WorkerProcessError(
            f"{len(lost)} of {processes} populate child processes ended before reporting ("
            + ", ".join(f"pid {c.pid}: exit code {c.exitcode}" for c in lost)
            + "); their leased jobs come back when the leases expire or with jobs.refresh(orphan_timeout=...)"
        )
    return {
        "success_count": sum(n for n, _ in done.values()),
        "error_list": [e for _, errors in done.values() for e in errors],
    }
