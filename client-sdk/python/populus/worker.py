"""``python -m populus.worker pipeline.py``: the Python twin of
populus-worker. It loads a pipeline module and keeps populating its tables,
as DataJoint's cluster workers loop on ``populate(reserve_jobs=True)``: a pass
runs ``populate(reserve_jobs=True)`` on each table (refreshing its key source
first, per ``config.jobs.auto_refresh``, unless another worker's refresh of
the table is running or one finished less than ``--refresh-interval`` ago).

When a pass found nothing to do, the worker waits on the server for work
(``Table.wait_for_work``, a ClaimRefresh long-poll of up to a minute on each
table at once, in a thread per table; the first to find work ends the
others'): the server answers when a job becomes pending or when a table's
refresh comes due and this worker is granted its claim, and the next pass
starts then. So an idle fleet makes one call per worker and table a minute,
and still starts on new work within moments. The worker sleeps instead, the
sleep doubling from 1 s up to ``--idle-wait``, when the server was
unreachable, and when the last wait said a job was pending that the pass
then could not take (a job delayed, or above ``--priority``: the wait would
answer the same at once), and with ``--refresh-interval 0`` (a refresh is
always due, so a wait would end at once). Without
``config.jobs.auto_refresh`` the wait takes no claim (the SDK reads the
table's counts every 10 s instead). A stop (SIGTERM/SIGINT) cancels the
waits in flight. As populus-worker's passes (worker/src/populate-passes.ts).

``--refresh-interval SECONDS`` (``POPULUS_REFRESH_INTERVAL``, 0 to 86400) is
passed to every populate as ``refresh_interval``. It defaults to 30, not to
the SDK's 0 (a script's populate reads its key source every time, as
DataJoint's does): a worker loops, and every node's passes would otherwise
read the key source back to back (one at a time, but without rest). 30 s: new
upstream keys are queued within half a minute, and an idle fleet reads an
expensive key source twice a minute at most. The flag wins over the variable,
but a bad ``POPULUS_REFRESH_INTERVAL`` (or any bad ``POPULUS_*`` job variable,
which populate's child processes read too) is refused even with the flag.

The module is imported by its name with its directory on ``sys.path``, so the
child processes of ``--processes N`` import its makes the same way. SIGTERM
or SIGINT stops gracefully: nothing more is reserved, running makes may finish
for ``--grace`` seconds, then every held lease is released without charging
an attempt, and the worker exits 0; a second signal stops at once. An
unreachable server (UNAVAILABLE or RESOURCE_EXHAUSTED after the SDK's own
retries, or a wait on it silent past its deadline) is logged as "server
unavailable; retrying" and tried again after the idle sleep: a server restart
is not the worker's failure. It ends the pass (the next tables would find the
same server), and ``--once`` exits only after a pass that it did not cut short.

Exit codes as populus-worker's: 0 done (``--once``, ``--max-calls``) or
stopped; 1 a make failed without ``--suppress-errors``, populate could not
run, or the wait for work failed otherwise ("wait for work failed"); 2 bad usage (a bad option or ``POPULUS_*`` variable: one line on
stderr after the usage); 3 the module could not be loaded or defines no table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

from populus.claimed_refresh import WorkFound
from populus.config import MAX_REFRESH_INTERVAL_S, jobs_settings_from_env
from populus.errors import InvalidConfigError, MakeError, ResourceExhaustedError, UnavailableError
from populus.graceful_stop import GracefulStop
from populus.table import Table


WORKER_REFRESH_INTERVAL_S = 30
"""The worker's ``--refresh-interval`` default; see the module docstring for
why it is not the SDK's 0."""

LONG_POLL_S = 60
"""One wait on the server, seconds: a minute, the longest it holds a long-poll."""


def _log(event: str, **fields: Any) -> None:
    """One JSON line on stdout, as populus-worker logs."""
    print(json.dumps({"time": time.time(), "msg": event, **fields}, default=str), flush=True)


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return v


def _seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds (fractions allowed) from ``low`` to ``high``."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or not low <= v <= high:
            raise argparse.ArgumentTypeError(f'must be a number of seconds from {low:g} to {high:g}, got "{text}"')
        return int(v) if v.is_integer() else v

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m populus.worker", description="Keeps populating the tables of a Python pipeline module.")
    p.add_argument("pipeline", help="the pipeline module: a .py file that defines tables at its top level")
    p.add_argument("--table", action="append", default=None, help="a table to populate (repeat for several); default every table of the module")
    p.add_argument("--processes", type=_positive_int, default=1, help="OS processes per populate (default 1)")
    p.add_argument("--max-calls", type=_positive_int, default=None, help="stop (exit 0) after this many make calls in all")
    p.add_argument("--priority", type=int, default=None, help="only jobs at this priority or more urgent")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--suppress-errors", action="store_true", help="record failed makes and go on")
    p.add_argument("--server", default=None, help="the Populus server (sets POPULUS_URL before the module is imported)")
    p.add_argument("--lease-duration", type=float, default=60.0, help="lease length, seconds (default 60)")
    p.add_argument("--grace", type=float, default=30.0, help="on SIGTERM/SIGINT, seconds running makes may finish (default 30)")
    p.add_argument("--idle-wait", type=float, default=10.0, help="longest wait between passes that found nothing to do (default 10)")
    p.add_argument(
        "--refresh-interval",
        type=_seconds(0, MAX_REFRESH_INTERVAL_S),
        default=None,
        metavar="SECONDS",
        help=f"a pass reads no key source that any worker refreshed less than this long ago, 0 to {MAX_REFRESH_INTERVAL_S} "
        f"(0: only a running refresh holds it back); env POPULUS_REFRESH_INTERVAL, default {WORKER_REFRESH_INTERVAL_S}",
    )
    return p


def _load(path: str) -> dict[str, Table]:
    """The module's tables by name, in definition order."""
    full = os.path.abspath(path)
    if not full.endswith(".py") or not os.path.isfile(full):
        raise ImportError(f"{path}: not a .py file")
    sys.path.insert(0, os.path.dirname(full))
    module = importlib.import_module(os.path.basename(full)[:-3])
    tables = {v.name: v for v in vars(module).values() if isinstance(v, Table)}
    if not tables:
        raise ImportError(f"{path} defines no table (db.table(...) at its top level)")
    return tables


def _refresh_interval(parser: argparse.ArgumentParser, flag: float | None) -> float:
    """--refresh-interval, else POPULUS_REFRESH_INTERVAL, else the worker's 30.
    A bad ``POPULUS_*`` job variable ends the worker here (exit 2) even when
    the flag is given: the SDK in populate's child processes reads it too."""
    try:
        env = jobs_settings_from_env(os.environ)
    except InvalidConfigError as err:
        message = str(err)
        if message.startswith("POPULUS_REFRESH_INTERVAL "):
            message = f"argument --refresh-interval: {message}"
        parser.error(message)
    if flag is not None:
        return flag
    return env.get("refresh_interval", WORKER_REFRESH_INTERVAL_S)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    refresh_interval = _refresh_interval(parser, args.refresh_interval)
    if args.server is not None:
        os.environ["POPULUS_URL"] = args.server
    try:
        tables = _load(args.pipeline)
    except Exception as err:  # noqa: BLE001 - any failure to import the user's module
        print(f"populus.worker: cannot load {args.pipeline}: {type(err).__name__}: {err}", file=sys.stderr)
        return 3
    if args.table:
        missing = [t for t in args.table if t not in tables]
        if missing:
            print(f"populus.worker: --table {missing[0]}: {args.pipeline} defines {', '.join(tables)}", file=sys.stderr)
            return 2
        tables = {t: tables[t] for t in args.table}

    stop = GracefulStop()

    def on_signal(signum: int, frame: object) -> None:
        if stop.stopping.is_set():
            raise KeyboardInterrupt
        _log("stopping", signal=signal.Signals(signum).name)
        stop.stop(args.grace)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _log("start", tables=list(tables), pipeline=args.pipeline, processes=args.processes, once=args.once, refreshIntervalSeconds=refresh_interval)
    calls_left = args.max_calls
    totals = {"success_count": 0, "errors": 0}
    idle = 1.0
    # The last wait on the server said a job was pending.
    told_of_jobs = False
    while not stop.stopping.is_set():
        worked = False
        unavailable = False
        for name, table in tables.items():
            if stop.stopping.is_set() or calls_left == 0:
                break
            try:
                result = table.populate(
                    reserve_jobs=True,
                    processes=args.processes,
                    max_calls=calls_left,
                    suppress_errors=args.suppress_errors,
                    priority=args.priority,
                    lease_duration=args.lease_duration,
                    refresh_interval=refresh_interval,
                    grace=args.grace,
                    stop=stop,
                    handle_signals=False,
                )
            except MakeError as err:
                _log("make failed", table=name, key=err.key, message=str(err))
                _log("stop", reason="make failed", exitCode=1, **totals)
                return 1
            except (UnavailableError, ResourceExhaustedError) as err:  # as populus-worker: the server's state, not the worker's failure
                # The pass ends here: the next tables would find the same server, each after the SDK's own retries.
                _log("server unavailable; retrying", table=name, message=str(err))
                unavailable = True
                break
            except Exception as err:  # noqa: BLE001 - a key source that raises, a refused request: logged, exit 1
                _log("populate failed", table=name, error=type(err).__name__, message=str(err))
                _log("stop", reason="populate failed", exitCode=1, **totals)
                return 1
            made = result["success_count"] + len(result["error_list"])
            totals["success_count"] += result["success_count"]
            totals["errors"] += len(result["error_list"])
            for key, message in result["error_list"]:
                _log("make failed", table=name, key=key, message=message)
            _log("pass", table=name, successCount=result["success_count"], errors=len(result["error_list"]))
            if calls_left is not None:
                calls_left -= made
            worked = worked or made > 0
        # --once is one whole pass: a pass cut short by an unavailable server is tried again after the sleep.
        if (args.once and not unavailable) or calls_left == 0 or stop.stopping.is_set():
            break
        if worked and not unavailable:
            idle = 1.0
            told_of_jobs = False
            continue
        # With a refresh interval of 0 a refresh is always due: a wait would end at once, every time.
        if not unavailable and not told_of_jobs and refresh_interval > 0:
            try:
                told_of_jobs = _wait_for_work_on_any(list(tables.values()), refresh_interval, stop) == "jobs"
                continue
            except Exception as err:  # noqa: BLE001 - a refused request: logged, exit 1
                if not _server_unavailable(err):
                    _log("wait for work failed", error=type(err).__name__, message=str(err))
                    _log("stop", reason="wait for work failed", exitCode=1, **totals)
                    return 1
                _log("server unavailable; retrying", message=str(err))
        told_of_jobs = False
        stop.pause(idle)  # a stop ends the wait early
        idle = min(idle * 2, args.idle_wait)
    reason = "signal" if stop.stopping.is_set() else ("max calls" if calls_left == 0 else "once")
    _log("stop", reason=reason, exitCode=0, **totals)
    return 0


def _server_unavailable(err: BaseException) -> bool:
    """Whether a wait on the server failed for the server's state, not the
    request's: unreachable or overloaded (after the SDK's retries), or silent
    past the long-poll's deadline (which wait_for_work raises as
    UnavailableError). The worker then sleeps and tries again."""
    return isinstance(err, (UnavailableError, ResourceExhaustedError))


def _wait_for_work_on_any(tables: Sequence[Table], refresh_interval: float, stop: GracefulStop) -> WorkFound:
    """Waits until any of ``tables`` has work ("jobs" before "refresh" when
    both are found at once) or ``stop`` stops (None), in long-polls of a
    minute on every table at once, a thread each; the first to find work (or
    to fail: its error is raised) ends the others', whose calls are
    cancelled. Their stop is one of their own, stopped by ``stop`` too, so
    that ending them does not stop the worker."""
    while not stop.stopping.is_set():
        found = GracefulStop()
        remove = stop.on_stop(lambda: found.stop(0))
        try:
            if len(tables) == 1:
                work = tables[0].wait_for_work(wait=LONG_POLL_S, refresh_interval=refresh_interval, stop=found)
                if work is not None:
                    return work
                continue
            answers: list[WorkFound] = []
            errors: list[BaseException] = []

            def wait(table: Table) -> None:
                try:
                    work = table.wait_for_work(wait=LONG_POLL_S, refresh_interval=refresh_interval, stop=found)
                    if work is not None:
                        answers.append(work)
                        found.stop(0)
                except BaseException as err:  # noqa: BLE001 - raised in the worker's thread below
                    errors.append(err)
                    found.stop(0)

            threads = [threading.Thread(target=wait, args=(t,), name=f"populus-wait-for-work-{t.name}", daemon=True) for t in tables]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            if "jobs" in answers:
                return "jobs"
            if "refresh" in answers:
                return "refresh"
        finally:
            remove()
            found.stop(0)
    return None


if __name__ == "__main__":
    sys.exit(main())
