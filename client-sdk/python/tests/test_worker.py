"""``python -m populus.worker``, the real entry point as a process: one pass
over a pipeline module's table with two processes, its JSON log lines, and
its exit codes for bad usage (2) and a module it cannot load (3);
``--refresh-interval`` (``POPULUS_REFRESH_INTERVAL``, default 30): a bad value
is bad usage, and a pass within the interval of the table's last refresh reads
no key source (a key added upstream is neither queued nor made) while
``--refresh-interval 0`` reads it and makes the key. An idle worker waits on
the server (the server's populus_refresh_claims_waiting gauge reads 1), makes
a job queued by another client as soon as it is queued, and a SIGTERM cancels
that wait (exit 0 at once); its wait on several tables ends, every long-poll
with it, when one of them has work ("jobs" before "refresh" when both are
found at once) or the worker stops. The idle loop (in this process, its waits
stood in for): it sleeps, its sleep doubling, only after a wait that told of
jobs the pass then did not take, or one that found the server unavailable
(a long-poll left unanswered past its deadline too); after "refresh" it goes straight back to waiting; any
other error of the wait ends it (exit 1, "wait for work failed"); with
``--refresh-interval 0`` it never waits on the server, and sleeps instead.
An unavailable server ends the pass at its table, and ``--once`` exits only
after a pass it did not cut short."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import queue
import threading
import time
from collections import Counter
from typing import Any, Iterator

import populus
import populus.worker
import pytest
from calls import recorded
from conftest import FIXTURES, PYTHON, metric, run_script, script_env, wait_until
from populus.graceful_stop import GracefulStop
from populus.worker import _wait_for_work_on_any


def test_once_populates_the_module_tables(server, table_name, calls_dir):
    env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name, POPULUS_TEST_KEYS="30", POPULUS_TEST_FAIL_EVERY="10")
    del env["POPULUS_URL"]  # --server sets it before the module is imported
    out = run_script(["-m", "populus.worker", str(FIXTURES / "py_pipeline.py"), "--once", "--processes", "2", "--suppress-errors", "--server", server.url], env)
    assert out.returncode == 0, out.stderr
    logs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [entry["msg"] for entry in logs if entry["msg"] in ("start", "pass", "stop")] == ["start", "pass", "stop"]
    [passed] = [entry for entry in logs if entry["msg"] == "pass"]
    assert passed == {**passed, "table": table_name, "successCount": 27, "errors": 3}
    assert sorted(e["key"]["id"] for e in logs if e["msg"] == "make failed") == [3, 13, 23]
    assert logs[-1] == {**logs[-1], "reason": "once", "exitCode": 0, "success_count": 27, "errors": 3}
    assert Counter(c["id"] for c in recorded(calls_dir, table_name)) == Counter(range(30))


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # nothing reaches the server
def test_exit_codes(server, calls_dir, table_name):
    env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name)
    out = run_script(["-m", "populus.worker", str(FIXTURES / "py_pipeline.py"), "--processes", "0"], env)
    assert out.returncode == 2 and "--processes: must be an integer >= 1, got 0" in out.stderr
    out = run_script(["-m", "populus.worker", str(FIXTURES / "py_pipeline.py"), "--table", "Other"], env)
    assert out.returncode == 2 and out.stderr == f"populus.worker: --table Other: {FIXTURES / 'py_pipeline.py'} defines {table_name}\n"
    out = run_script(["-m", "populus.worker", str(FIXTURES / "calls.py"), "--once"], env)
    assert out.returncode == 3
    assert out.stderr == f"populus.worker: cannot load {FIXTURES / 'calls.py'}: ImportError: {FIXTURES / 'calls.py'} defines no table (db.table(...) at its top level)\n"


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # nothing reaches the server
def test_a_bad_refresh_interval_is_bad_usage(server, calls_dir, table_name):
    env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name, POPULUS_TEST_KEYS="3")
    env.pop("POPULUS_REFRESH_INTERVAL", None)
    worker = ["-m", "populus.worker", str(FIXTURES / "py_pipeline.py"), "--once"]

    def refused(out, line: str) -> None:
        # As argparse refuses the worker's other options: the usage, then one line naming the option.
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("usage: python -m populus.worker ") and "Traceback" not in out.stderr
        assert out.stderr.splitlines()[-1] == f"python -m populus.worker: error: argument --refresh-interval: {line}"
        assert out.stdout == ""  # refused before the module was loaded

    for bad in ("-5", "86400.5", "86401", "soon", "nan", "inf", ""):
        refused(run_script([*worker, "--refresh-interval", bad], env), f'must be a number of seconds from 0 to 86400, got "{bad}"')
    refused(run_script([*worker, "--refresh-interval=-0.5"], env), 'must be a number of seconds from 0 to 86400, got "-0.5"')
    for bad, line in [
        ("-5", "POPULUS_REFRESH_INTERVAL must be a number of seconds from 0 to 86400, got -5"),
        ("86401", "POPULUS_REFRESH_INTERVAL must be a number of seconds from 0 to 86400, got 86401"),
        ("soon", 'POPULUS_REFRESH_INTERVAL must be a number, got "soon"'),
    ]:
        refused(run_script(worker, {**env, "POPULUS_REFRESH_INTERVAL": bad}), line)
        # Refused with a good flag too: the SDK of populate's child processes reads the variable as well.
        refused(run_script([*worker, "--refresh-interval", "60"], {**env, "POPULUS_REFRESH_INTERVAL": bad}), line)
    # No worker got as far as a refresh: the table was never declared.
    db = populus.connect(url=server.url)
    with pytest.raises(populus.TableNotFoundError):
        db.table(table_name, key_source=[], make=lambda key, ctx: None).jobs.progress()
    db.close()


def test_refresh_interval_holds_back_the_refresh_of_a_pass(server, table_name, calls_dir):
    def worker_pass(keys: int, *flags: str, **extra_env: str) -> tuple[float, int]:
        """A --once worker over ids 0..keys-1 (py_pipeline's key source): its refresh interval and how many it made."""
        env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name, POPULUS_TEST_KEYS=str(keys))
        env.pop("POPULUS_REFRESH_INTERVAL", None)
        env.update(extra_env)
        out = run_script(["-m", "populus.worker", str(FIXTURES / "py_pipeline.py"), "--once", *flags], env)
        assert out.returncode == 0, out.stderr
        logs = [json.loads(line) for line in out.stdout.splitlines()]
        [start] = [e for e in logs if e["msg"] == "start"]
        [passed] = [e for e in logs if e["msg"] == "pass"]
        return start["refreshIntervalSeconds"], passed["successCount"]

    db = populus.connect(url=server.url)
    jobs = db.table(table_name, key_source=[], make=lambda key, ctx: None).jobs

    # A new table: nothing refreshed it yet, so the default interval (30 s) holds nothing back.
    started = time.monotonic()
    assert worker_pass(5) == (30, 5)
    # Key 5 added upstream. Within 30 s of that refresh the default holds the next pass's back.
    assert worker_pass(6) == (30, 0), f"{time.monotonic() - started:.1f} s after the first refresh"
    assert worker_pass(6, "--refresh-interval", "3600") == (3600, 0)
    assert worker_pass(6, POPULUS_REFRESH_INTERVAL="3600") == (3600, 0)
    # Neither read the key source: key 5 was not queued, let alone made.
    assert Counter(c["id"] for c in recorded(calls_dir, table_name)) == Counter(range(5))
    progress = jobs.progress()
    assert (progress["target"], progress["pending"], progress["remaining"]) == (5, 0, 0)

    # --refresh-interval 0 (the flag wins over the variable): the pass reads the key source and makes key 5.
    assert worker_pass(6, "--refresh-interval", "0", POPULUS_REFRESH_INTERVAL="3600") == (0, 1)
    assert Counter(c["id"] for c in recorded(calls_dir, table_name)) == Counter(range(6))
    progress = jobs.progress()
    assert (progress["target"], progress["pending"], progress["remaining"]) == (6, 0, 0)
    db.close()


def waiting(server) -> float:
    """The ClaimRefresh long-polls waiting on the server now."""
    return metric(server, "populus_refresh_claims_waiting")


@contextlib.contextmanager
def idle_worker(server, table_name: str, calls_dir, *flags: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    """``python -m populus.worker`` on py_pipeline.py's table ``table_name`` with no key upstream
    (its first pass finds nothing, and it waits on the server), the refresh interval its default (30
    s: no refresh comes due during a test), an idle wait of an hour (a worker that slept instead of
    waiting on the server would hold), no grace and ``flags``; killed on the way out if still running."""
    worker_env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name, POPULUS_TEST_KEYS="0", **env)
    worker_env.pop("POPULUS_REFRESH_INTERVAL", None)
    worker = subprocess.Popen(
        [PYTHON, "-m", "populus.worker", str(FIXTURES / "py_pipeline.py"), "--idle-wait", "3600", "--grace", "0", *flags],
        env=worker_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


def test_an_idle_worker_waits_on_the_server_and_takes_new_work_at_once(server, table_name, calls_dir):
    # No key upstream: the first pass finds nothing to do, and the worker waits on the server. Its
    # interval (the default 30 s) keeps the refresh from coming due during the test, and an idle
    # wait of an hour would hold a worker that slept instead of waiting on the server.
    db = populus.connect(url=server.url)
    with idle_worker(server, table_name, calls_dir, POPULUS_TEST_STACKS_AFTER="55") as worker:
        wait_until("the idle worker to wait on the server", lambda: waiting(server) == 1 or worker.poll() is not None, timeout=30)
        assert worker.poll() is None
        # Another client queues a job: the worker's long-poll answers, and its next pass makes it.
        queued_at = time.monotonic()
        assert db.table(table_name, key_source=[{"id": 7}], make=lambda key, ctx: None).jobs.refresh()["added"] == 1
        wait_until("the worker to make the queued job", lambda: len(recorded(calls_dir, table_name)) > 0 or worker.poll() is not None, timeout=20)
        assert [c["id"] for c in recorded(calls_dir, table_name)] == [7]
        # Woken by the job, not by the server's own recheck (7.5 to 12.5 s).
        assert time.monotonic() - queued_at < 6
        # Idle again: waiting on the server again. SIGTERM cancels that wait: the worker exits at once.
        wait_until("the worker to wait on the server again", lambda: waiting(server) == 1 or worker.poll() is not None, timeout=20)
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=20)
        assert time.monotonic() - stopped_at < 10
    assert worker.returncode == 0, err
    wait_until("the server to end the cancelled long-poll", lambda: waiting(server) == 0, timeout=10)
    logs = [json.loads(line) for line in out.splitlines()]
    passes = [e["successCount"] for e in logs if e["msg"] == "pass"]
    assert passes[0] == 0 and sum(passes) == 1
    assert logs[-1] == {**logs[-1], "msg": "stop", "reason": "signal", "exitCode": 0, "success_count": 1, "errors": 0}
    rows = db.table(table_name, key_source=[], make=lambda key, ctx: None).fetch()
    assert [r["key"]["id"] for r in rows] == [7]
    db.close()


def _signal_a_thread_other_than_main(pid: int, signum: int) -> None:
    """Sends ``signum`` to one of process ``pid``'s threads that is not its main
    thread (tgkill), as the kernel may deliver a process's SIGTERM."""
    libc = ctypes.CDLL(None, use_errno=True)
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert tids, "the worker runs threads besides its main one (gRPC's)"
    sys_tgkill = 234  # x86-64
    assert libc.syscall(sys_tgkill, pid, tids[0], signum) == 0, os.strerror(ctypes.get_errno())


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_sigterm_delivered_to_another_thread_stops_the_waiting_worker(server, table_name, calls_dir):
    # Python runs the handler only in the main thread, when it next runs Python code; a wait of the
    # main thread with no end (the long-poll's) was not woken by a SIGTERM the kernel gave another
    # thread, and the worker stopped only when its long-poll ended, up to a minute later.
    with idle_worker(server, table_name, calls_dir) as worker:
        wait_until("the idle worker to wait on the server", lambda: waiting(server) >= 1 or worker.poll() is not None, timeout=30)
        assert worker.poll() is None
        time.sleep(0.5)
        stopped_at = time.monotonic()
        _signal_a_thread_other_than_main(worker.pid, signal.SIGTERM)
        out, err = worker.communicate(timeout=20)
        assert time.monotonic() - stopped_at < 5
    assert worker.returncode == 0, err
    logs = [json.loads(line) for line in out.splitlines()]
    assert logs[-1] == {**logs[-1], "msg": "stop", "reason": "signal", "exitCode": 0}


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_sigterm_delivered_to_another_thread_stops_the_sleeping_worker(server, table_name, calls_dir):
    # With --refresh-interval 0 the idle worker sleeps between passes (1, 2, 4, 8 s, ...) instead of
    # waiting on the server, and that sleep was not woken either: the worker stopped at its end.
    with idle_worker(server, table_name, calls_dir, "--refresh-interval", "0") as worker:
        # Read by a thread, so that a worker that stalls fails the test at the queue's timeout.
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in worker.stdout], daemon=True)
        reader.start()
        logs: list[dict[str, Any]] = []
        while sum(e["msg"] == "pass" for e in logs) < 4:  # after 1 + 2 + 4 s of sleep; the fourth pass's sleep lasts 8 s
            logs.append(json.loads(lines.get(timeout=30)))
        stopped_at = time.monotonic()
        _signal_a_thread_other_than_main(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)
        assert time.monotonic() - stopped_at < 3, "stopped during its sleep, not at its end"
        reader.join(timeout=10)
    assert worker.returncode == 0, worker.stderr.read()
    logs += [json.loads(lines.get_nowait()) for _ in range(lines.qsize())]
    assert logs[-1] == {**logs[-1], "msg": "stop", "reason": "signal", "exitCode": 0}


def test_the_wait_on_several_tables_ends_with_the_first_to_find_work(server, table_name):
    db = populus.connect(url=server.url)
    names = [f"{table_name}_a", f"{table_name}_b"]
    tables = [db.table(name, key_source=[{"id": 0}], make=lambda key, ctx: {"ok": True}) for name in names]
    for t in tables:
        assert t.populate(reserve_jobs=True) == {"success_count": 1, "error_list": []}
    stop = GracefulStop()
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(_wait_for_work_on_any(tables, 3600, stop)), daemon=True)
    thread.start()
    # A long-poll on each table; a job queued on the second ends the wait, and the first's long-poll with it.
    wait_until("a long-poll on each table", lambda: waiting(server) == 2, timeout=15)
    other = populus.connect(url=server.url)
    queued_at = time.monotonic()
    assert other.table(names[1], key_source=[{"id": 1}], make=lambda key, ctx: None).jobs.refresh()["added"] == 1
    thread.join(20)
    assert answer == ["jobs"] and time.monotonic() - queued_at < 6
    wait_until("the other table's long-poll to be cancelled", lambda: waiting(server) == 0, timeout=10)
    assert not stop.stopping.is_set()

    # Nothing pending anywhere: the worker's stop ends both long-polls, and the wait (False).
    assert tables[1].populate(reserve_jobs=True, refresh=False) == {"success_count": 1, "error_list": []}
    answer.clear()
    thread = threading.Thread(target=lambda: answer.append(_wait_for_work_on_any(tables, 3600, stop)), daemon=True)
    thread.start()
    wait_until("a long-poll on each table", lambda: waiting(server) == 2, timeout=15)
    stopped_at = time.monotonic()
    stop.stop(0)
    thread.join(20)
    assert answer == [None] and time.monotonic() - stopped_at < 5
    wait_until("both long-polls to be cancelled", lambda: waiting(server) == 0, timeout=10)
    other.close()
    db.close()


class FakeTable:
    """A table whose wait_for_work answers the next of ``works`` (an exception
    is raised; "stall" waits until its stop stops, then answers None), after
    ``together`` (a barrier) when given, recording what it was asked."""

    def __init__(self, name: str, works: list[Any], together: threading.Barrier | None = None) -> None:
        self.name = name
        self.works = works
        self.together = together
        self.asked: list[tuple[float, float]] = []

    def wait_for_work(self, wait: float, refresh_interval: float, stop: GracefulStop) -> Any:
        self.asked.append((wait, refresh_interval))
        if self.together is not None:
            self.together.wait(10)
        work = self.works.pop(0)
        if isinstance(work, BaseException):
            raise work
        if work == "stall":
            assert stop.stopping.wait(10), "the wait was not ended"
            return None
        return work


def test_the_wait_on_several_tables_prefers_jobs_to_a_refresh_found_at_once():
    stop = GracefulStop()
    # Both answer together: "jobs" wins, whichever table found it.
    for works in (["refresh", "jobs"], ["jobs", "refresh"], ["refresh", "refresh"]):
        together = threading.Barrier(2)
        tables = [FakeTable(f"T{i}", [work], together) for i, work in enumerate(works)]
        assert _wait_for_work_on_any(tables, 30, stop) == ("jobs" if "jobs" in works else "refresh")
        assert [t.asked for t in tables] == [[(60, 30)], [(60, 30)]]
    # The first to answer ends the other's wait (None), and its answer is the wait's.
    tables = [FakeTable("Stalled", ["stall"]), FakeTable("Due", ["refresh"])]
    assert _wait_for_work_on_any(tables, 30, stop) == "refresh"
    # One table: its answer; a wait that ran out with nothing is followed by another.
    single = FakeTable("T", [None, None, "jobs"])
    assert _wait_for_work_on_any([single], 45, stop) == "jobs"
    assert single.asked == [(60, 45)] * 3
    # An error of one table's wait ends the others' and is raised.
    tables = [FakeTable("Stalled", ["stall"]), FakeTable("Denied", [populus.PermissionDeniedError("no")])]
    with pytest.raises(populus.PermissionDeniedError):
        _wait_for_work_on_any(tables, 30, stop)
    # The worker's stop: None, with no wait.
    stop.stop(0)
    assert _wait_for_work_on_any([FakeTable("T", [])], 30, stop) is None
    stop.dispose()


def recording_stop(events: list[Any], most: int) -> type[GracefulStop]:
    """The worker's GracefulStop, whose pauses (the idle loop's sleeps) are
    logged in ``events`` and return at once; after ``most`` of them it stops."""

    class RecordingStop(GracefulStop):
        def pause(self, seconds: float) -> bool:
            events.append(("sleep", seconds))
            if sum(1 for e in events if e[0] == "sleep") >= most:
                self.stop(0)
            return self.stopping.is_set()

    return RecordingStop


def run_idle_worker(
    server, table_name: str, tmp_path, monkeypatch, answers: list[Any], *flags: str, most_sleeps: int = 100
) -> tuple[int, list[Any]]:
    """``populus.worker.main`` in this process on a table with an empty key source
    (every pass finds nothing to do), its waits on the server answered from
    ``answers`` (an exception is raised): its exit code, what it did between
    passes: ("wait", its tables, the refresh interval) and ("sleep", seconds)."""
    module = tmp_path / f"idle_{table_name.lower()}.py"
    module.write_text(
        "import populus\n"
        f"db = populus.connect(url={server.url!r})\n"
        f"Idle = db.table({table_name!r}, key_source=[], make=lambda key, ctx: {{}})\n"
    )
    events: list[Any] = []

    def waited(tables, refresh_interval, stop):
        events.append(("wait", [t.name for t in tables], refresh_interval))
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(populus.worker, "_wait_for_work_on_any", waited)
    monkeypatch.setattr(populus.worker, "GracefulStop", recording_stop(events, most_sleeps))
    monkeypatch.setattr(sys, "path", list(sys.path))  # main puts the module's directory first
    monkeypatch.delenv("POPULUS_REFRESH_INTERVAL", raising=False)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = populus.worker.main([str(module), "--grace", "0", "--idle-wait", "5", *flags])
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        sys.modules.pop(module.stem, None)
    return code, events


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # one table with nothing to do
def test_the_idle_loop_sleeps_only_when_told_of_jobs_it_did_not_take_or_the_server_was_unavailable(
    server, table_name, tmp_path, monkeypatch, capsys
):
    answers = [
        "refresh",  # granted the claim: the pass refreshes, finds nothing, and waits again at once
        "jobs",  # a job pending that the pass then did not take (delayed, or above --priority): a sleep
        "refresh",
        populus.UnavailableError("T: the server did not answer a wait for work within 90 s"),  # a hung long-poll: a sleep
        None,  # the worker's stop (none here: the loop goes on)
        populus.PermissionDeniedError("not allowed"),  # any other error: exit 1
    ]
    code, events = run_idle_worker(server, table_name, tmp_path, monkeypatch, answers, "--refresh-interval", "30")
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    wait = ("wait", [table_name], 30)
    assert events == [wait, wait, ("sleep", 1.0), wait, wait, ("sleep", 2.0), wait, wait]
    assert [e["msg"] for e in logs if e["msg"] != "pass"] == ["start", "server unavailable; retrying", "wait for work failed", "stop"]
    assert logs[-2] == {**logs[-2], "error": "PermissionDeniedError", "message": "not allowed"}
    assert logs[-1] == {**logs[-1], "reason": "wait for work failed", "exitCode": 1}


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # one table with nothing to do
def test_with_refresh_interval_0_the_idle_worker_sleeps_instead_of_waiting_on_the_server(
    server, table_name, tmp_path, monkeypatch, capsys
):
    # A refresh is always due with 0: a wait would end at once. The sleep doubles up to --idle-wait.
    code, events = run_idle_worker(server, table_name, tmp_path, monkeypatch, [], "--refresh-interval", "0", most_sleeps=5)
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert events == [("sleep", 1.0), ("sleep", 2.0), ("sleep", 4.0), ("sleep", 5.0), ("sleep", 5.0)]
    assert [e["successCount"] for e in logs if e["msg"] == "pass"] == [0] * 5
    assert logs[-1] == {**logs[-1], "msg": "stop", "reason": "signal", "exitCode": 0}


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # two tables with nothing to do
def test_an_unavailable_server_ends_the_pass_and_once_exits_only_after_a_whole_pass(server, table_name, tmp_path, monkeypatch, capsys):
    # As populus-worker: the pass stops at the table that found the server unavailable, sleeps, and
    # starts over; --once is done after the first pass that reached every table.
    module = tmp_path / f"two_{table_name.lower()}.py"
    module.write_text(
        "import populus\n"
        f"db = populus.connect(url={server.url!r})\n"
        f"First = db.table({table_name + 'A'!r}, key_source=[], make=lambda key, ctx: {{}})\n"
        f"Second = db.table({table_name + 'B'!r}, key_source=[], make=lambda key, ctx: {{}})\n"
    )
    events: list[Any] = []
    real_populate = populus.Table.populate

    def populate(self, **kwargs):
        events.append(("populate", self.name))
        if len(events) == 1:
            raise populus.UnavailableError("the server is restarting")
        return real_populate(self, **kwargs)

    monkeypatch.setattr(populus.Table, "populate", populate)
    monkeypatch.setattr(populus.worker, "GracefulStop", recording_stop(events, 100))
    monkeypatch.setattr(sys, "path", list(sys.path))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = populus.worker.main([str(module), "--once", "--grace", "0", "--idle-wait", "5"])
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        sys.modules.pop(module.stem, None)
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    first, second = ("populate", table_name + "A"), ("populate", table_name + "B")
    assert events == [first, ("sleep", 1.0), first, second]
    assert [e["msg"] for e in logs] == ["start", "server unavailable; retrying", "pass", "pass", "stop"]
    assert logs[-1] == {**logs[-1], "reason": "once", "exitCode": 0}
