"""populate's refresh claims (promise 4): against real servers on each
dialect, concurrent populate(reserve_jobs=True) calls read a slow key source
once and make every key once (on a new table the populates held back wait for
the refresh and take their share); a refresh that finished less than
refresh_interval ago is not repeated; a key source that raises gives the
claim back. Against a stand-in server: every Refresh call of a claimed
refresh carries the claim, a failed one is abandoned under that claim, a
second populate of the same Table in this process sends no ClaimRefresh while
the first refreshes, a populate held back by a running refresh of a table
with nothing pending asks again until it ends (or a stop, or 30 s: then it
is held back as it stood), a slow refresh renews its claim while it runs (18
times at most) and not after, and a server older than claims gets populate's
refresh as before. Bad refresh_interval options and settings
change nothing. ``Table.wait_for_work`` sends its long-polls under the
table's claim id with a claim_timeout of a minute and a deadline 30 s past
the wait, asks a server older than the long-poll again after the rest of
each long-poll or 10 s, whichever is first (a stop ends that sleep), answers
"refresh" at once when granted and "jobs" when told of a pending job, waits
out a server older than refresh claims (10 s at most) before it answers
"refresh", and with config.jobs.auto_refresh off asks for no claim but reads
the table's counts every 10 s until a job is pending (NOT_FOUND: none)
(tests/test_wait_for_work.py: the same against real servers)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from concurrent import futures
from typing import Any, Iterator

import grpc
import populus
import pytest
from conftest import run_script, script_env
from populus import claimed_refresh as claimed_refresh_module
from populus.claimed_refresh import ClaimedRefreshOutcome, RefreshClaim, claimed_refresh
from populus.graceful_stop import GracefulStop
from populus.refresh import RefreshParams
from populus.v1 import job_service_pb2, job_service_pb2_grpc, types_pb2


class CountingSource:
    """A key source (a function) that counts its reads, each taking ``sleep`` s."""

    def __init__(self, keys: list[dict[str, Any]], sleep: float = 0.0, fail: BaseException | None = None) -> None:
        self.keys = keys
        self.sleep = sleep
        self.fail = fail
        self.reads = 0
        self._lock = threading.Lock()

    def __call__(self) -> list[dict[str, Any]]:
        with self._lock:
            self.reads += 1
        time.sleep(self.sleep)
        if self.fail is not None:
            raise self.fail
        return list(self.keys)


class Made:
    """A make that records the ids it made (from any thread), and by which thread; each takes ``sleep`` s."""

    def __init__(self, sleep: float = 0.005) -> None:
        self.sleep = sleep
        self.ids: list[int] = []
        self.threads: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, key: dict[str, Any], ctx: Any) -> dict[str, Any]:
        time.sleep(self.sleep)
        with self._lock:
            self.ids.append(key["id"])
            self.threads.append(threading.current_thread().name)
        return {"id": key["id"]}


def ids(n: int, start: int = 0) -> list[dict[str, int]]:
    return [{"id": i} for i in range(start, start + n)]


def run_threads(count: int, body) -> list[Any]:
    """Runs body(i) in ``count`` threads started together; their answers in order (a raise fails)."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait(10)
            results[i] = body(i)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    return results


def test_concurrent_populates_read_the_key_source_once(server, table_name):
    workers = 4
    made = Made()
    source = CountingSource(ids(40), sleep=0.5)
    # 10 keys queued before: the workers held back go straight to reserving them meanwhile.
    seed = populus.connect(url=server.url)
    assert seed.table(table_name, key_source=ids(10), make=made).jobs.refresh()["added"] == 10
    connections = [populus.connect(url=server.url) for _ in range(workers)]
    tables = [db.table(table_name, key_source=source, make=made) for db in connections]
    for t in tables:
        t.jobs.progress()  # each connection is open before they start together
    results = run_threads(workers, lambda i: tables[i].populate(reserve_jobs=True))
    assert source.reads == 1
    assert Counter(made.ids) == Counter(range(40))
    assert sum(r["success_count"] for r in results) == 40 and all(r["error_list"] == [] for r in results)
    assert tables[0].jobs.progress() == {"pending": 0, "reserved": 0, "success": 0, "error": 0, "ignore": 0, "target": 40, "remaining": 0}
    for db in [seed, *connections]:
        db.close()


def test_concurrent_populates_of_a_new_table_read_it_once_and_share_the_keys(server, table_name):
    # No job and no table yet: the populates held back hear that nothing is pending, and wait for
    # the running refresh rather than end with nothing done. 100 keys of 20 ms each are 2 s of work
    # for one worker: the waiters (asking again 0.25 s, 0.75 s, 1.75 s after their first ask) wake
    # while the reader is far from done, and take their share.
    workers = 4
    made = Made(sleep=0.02)
    source = CountingSource(ids(100), sleep=0.5)
    connections = [populus.connect(url=server.url) for _ in range(workers)]
    tables = [db.table(table_name, key_source=source, make=made) for db in connections]
    for t in tables:
        with pytest.raises(populus.TableNotFoundError):
            t.jobs.progress()
    results = run_threads(workers, lambda i: tables[i].populate(reserve_jobs=True))
    assert source.reads == 1
    assert Counter(made.ids) == Counter(range(100))
    assert sum(r["success_count"] for r in results) == 100 and all(r["error_list"] == [] for r in results)
    assert len(set(made.threads)) > 1, Counter(made.threads)
    assert sum(1 for r in results if r["success_count"] > 0) > 1, results
    assert tables[0].jobs.progress()["remaining"] == 0
    for t in tables:
        assert not t.refresh_claim.refreshing
    for db in connections:
        db.close()


def test_threads_of_one_table_object_refresh_once(server, table_name):
    # The same Table in several threads shares one claim id, which the server grants again to
    # its holder: the process itself holds its second populate back.
    made = Made()
    source = CountingSource(ids(20), sleep=0.5)
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=source, make=made)
    results = run_threads(3, lambda i: table.populate(reserve_jobs=True))
    assert source.reads == 1
    assert Counter(made.ids) == Counter(range(20))
    assert sum(r["success_count"] for r in results) == 20
    assert not table.refresh_claim.refreshing
    db.close()


def test_a_recent_refresh_is_not_repeated_within_refresh_interval(server, table_name):
    db = populus.connect(url=server.url)
    made = Made()
    source = CountingSource(ids(5))
    first = db.table(table_name, key_source=source, make=made)
    assert first.populate(reserve_jobs=True) == {"success_count": 5, "error_list": []}
    assert source.reads == 1

    # Another Table object (another claim id), a new key upstream: within 60 s of the last
    # refresh the key source is not read and the key is not queued.
    source.keys.append({"id": 5})
    second = db.table(table_name, key_source=source, make=made)
    assert second.populate(reserve_jobs=True, refresh_interval=60) == {"success_count": 0, "error_list": []}
    assert source.reads == 1
    assert len(second.jobs.pending) == 0 and second.jobs.progress()["target"] == 5
    # So too with config.jobs.refresh_interval, populate's default.
    populus.config.jobs.refresh_interval = 60
    try:
        assert second.populate(reserve_jobs=True) == {"success_count": 0, "error_list": []}
    finally:
        populus.config.jobs.refresh_interval = 0
    assert source.reads == 1

    # With the default interval (0) only a running refresh holds one back: read, and the key made.
    assert second.populate(reserve_jobs=True) == {"success_count": 1, "error_list": []}
    assert source.reads == 2
    assert Counter(made.ids) == Counter(range(6))

    # refresh=False reads nothing; an explicit jobs.refresh() and direct mode are never held back.
    source.keys.append({"id": 6})
    assert first.populate(reserve_jobs=True, refresh=False, refresh_interval=60) == {"success_count": 0, "error_list": []}
    assert source.reads == 2
    assert first.jobs.refresh()["added"] == 1
    assert source.reads == 3
    source.keys.append({"id": 7})
    assert first.populate(refresh_interval=86_400) == {"success_count": 2, "error_list": []}
    assert source.reads == 4
    assert Counter(made.ids) == Counter(range(8))
    db.close()


def test_a_key_source_that_raises_gives_the_claim_back(server, table_name):
    db = populus.connect(url=server.url)
    made = Made()
    broken = CountingSource(ids(5), fail=RuntimeError("upstream database is down"))
    with pytest.raises(RuntimeError, match="^upstream database is down$"):
        db.table(table_name, key_source=broken, make=made).populate(reserve_jobs=True)
    assert broken.reads == 1
    # Another Table object (another claim id) is granted at once, and the failed refresh was not
    # recorded as one (a refresh_interval does not hold this one back either).
    source = CountingSource(ids(5))
    table = db.table(table_name, key_source=source, make=made)
    assert table.populate(reserve_jobs=True, refresh_interval=3600) == {"success_count": 5, "error_list": []}
    assert source.reads == 1
    assert Counter(made.ids) == Counter(range(5))

    # A key source that fails midway, after a first Refresh call was sent (a batch of 10,000 keys is sent once a second one is full).
    def midway() -> Iterator[dict[str, int]]:
        yield from ids(21_000, start=100)
        raise RuntimeError("cut off")

    with pytest.raises(RuntimeError, match="^cut off$"):
        db.table(table_name, key_source=midway, make=made).populate(reserve_jobs=True)
    assert table.populate(reserve_jobs=True, max_calls=0) == {"success_count": 0, "error_list": []}
    assert source.reads == 2
    db.close()


def test_an_empty_key_source_of_a_new_table_ends_the_claim(server, table_name):
    db = populus.connect(url=server.url)
    made = Made()
    empty = CountingSource([])
    assert db.table(table_name, key_source=empty, make=made).populate(reserve_jobs=True) == {"success_count": 0, "error_list": []}
    assert empty.reads == 1
    # The claim ended with that refresh: the next worker (interval 0) reads its key source.
    source = CountingSource(ids(3))
    assert db.table(table_name, key_source=source, make=made).populate(reserve_jobs=True) == {"success_count": 3, "error_list": []}
    assert source.reads == 1
    db.close()


# Checks the client makes before any call: one server (SQLite) is enough.
client_side = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


@client_side
def test_bad_refresh_interval_changes_nothing(server, table_name, calls_dir):
    db = populus.connect(url=server.url)
    source = CountingSource(ids(3))
    table = db.table(table_name, key_source=source, make=Made())
    for bad in (-1, 86_401, "60", float("nan"), float("inf"), True):
        with pytest.raises(populus.InvalidArgumentError) as raised:
            table.populate(reserve_jobs=True, refresh_interval=bad)
        assert str(raised.value) == f"{table_name}.populate: refresh_interval must be from 0 to 86400 seconds, got {bad!r}"
        assert not isinstance(raised.value, populus.InvalidConfigError)
    # Nothing reached the server (the table was never declared) and nothing was read.
    assert source.reads == 0
    with pytest.raises(populus.TableNotFoundError):
        table.jobs.progress()

    jobs = populus.config.jobs
    before = jobs.snapshot()
    assert before["refresh_interval"] == 0
    for bad in (-0.5, 86_400.5, "10", None, False):
        with pytest.raises(populus.InvalidConfigError) as raised:
            jobs.refresh_interval = bad
        assert str(raised.value) == f"config.jobs.refresh_interval must be a number of seconds from 0 to 86400, got {bad!r}"
    with pytest.raises(populus.InvalidConfigError):
        jobs.set(refresh_interval=30, stale_timeout=-1)
    assert jobs.snapshot() == before
    jobs.set(refresh_interval=86_400)
    assert jobs.refresh_interval == 86_400
    jobs.refresh_interval = 0

    code = "import populus; print(populus.config.jobs.refresh_interval)"
    env = script_env(server, calls_dir)
    assert run_script(["-c", code], {**env, "POPULUS_REFRESH_INTERVAL": "90"}).stdout.strip() == "90"
    assert run_script(["-c", code], {**env, "POPULUS_REFRESH_INTERVAL": "2.5"}).stdout.strip() == "2.5"
    assert run_script(["-c", code], {**env, "POPULUS_REFRESH_INTERVAL": " "}).stdout.strip() == "0"
    for raw, message in [
        ("soon", 'POPULUS_REFRESH_INTERVAL must be a number, got "soon"'),
        ("-5", "POPULUS_REFRESH_INTERVAL must be a number of seconds from 0 to 86400, got -5"),
        ("86401", "POPULUS_REFRESH_INTERVAL must be a number of seconds from 0 to 86400, got 86401"),
        ("nan", "POPULUS_REFRESH_INTERVAL must be a number of seconds from 0 to 86400, got nan"),
    ]:
        out = run_script(["-c", code], {**env, "POPULUS_REFRESH_INTERVAL": raw})
        assert out.returncode == 1
        assert out.stderr.strip().endswith(f"populus.errors.InvalidConfigError: {message}"), out.stderr


def held_back(running: bool, any_pending: bool | None) -> job_service_pb2.ClaimRefreshResponse:
    """A ClaimRefresh answer that holds the caller back."""
    answer = job_service_pb2.ClaimRefreshResponse(granted=False, running=running)
    if any_pending is not None:
        answer.any_pending = any_pending
    return answer


class StandIn(job_service_pb2_grpc.JobServiceServicer):
    """A stand-in server that records what it was sent (and when, in
    ``times``; what each ClaimRefresh's deadline left, in ``deadlines``;
    ``asked`` and ``progress_read`` are set by each claim asked for and each
    GetProgress). ``claims``: whether it knows ClaimRefresh (else it answers
    UNIMPLEMENTED, as a server older than refresh claims). ClaimRefresh answers
    the next of ``claim_answers`` (the last one again once they run out;
    granted when there are none), after ``claim_hold`` when that is set (a
    server that hangs), a renewal answers granted; Refresh answers
    nothing pending, and waits for ``hold`` when that is set; Reserve answers
    no job; GetProgress answers the next of ``pending`` (the last one again
    once they run out) as the pending count, a status code as that error."""

    def __init__(self, claims: bool = True) -> None:
        self.claims = claims
        self.sent: list[tuple[str, Any]] = []
        self.times: list[float] = []
        self.hold: threading.Event | None = None
        self.claim_hold: threading.Event | None = None
        self.refreshing = threading.Event()
        self.claim_answers: list[job_service_pb2.ClaimRefreshResponse] = []
        self.asked = threading.Event()
        self.pending: list[int | grpc.StatusCode] = [0]
        self.progress_read = threading.Event()
        self.deadlines: list[float | None] = []
        self._lock = threading.Lock()

    def _record(self, name: str, request: Any) -> None:
        with self._lock:
            self.sent.append((name, request))
            self.times.append(time.monotonic())

    def ClaimRefresh(self, request, context):
        self._record("ClaimRefresh", request)
        self.deadlines.append(context.time_remaining())
        if not request.renew:
            self.asked.set()
        if self.claim_hold is not None:
            self.claim_hold.wait(20)
        if not self.claims:
            return super().ClaimRefresh(request, context)
        if request.renew:
            return job_service_pb2.ClaimRefreshResponse(granted=True)
        with self._lock:
            if not self.claim_answers:
                return job_service_pb2.ClaimRefreshResponse(granted=True)
            return self.claim_answers.pop(0) if len(self.claim_answers) > 1 else self.claim_answers[0]

    def AbandonRefresh(self, request, context):
        self._record("AbandonRefresh", request)
        return job_service_pb2.AbandonRefreshResponse(released=True)

    def Refresh(self, request, context):
        self._record("Refresh", request)
        self.refreshing.set()
        if self.hold is not None:
            self.hold.wait(20)
        return job_service_pb2.RefreshResponse(any_pending=False) if request.final else job_service_pb2.RefreshResponse()

    def Reserve(self, request, context):
        self._record("Reserve", request)
        return job_service_pb2.ReserveResponse()

    def GetProgress(self, request, context):
        self._record("GetProgress", request)
        self.progress_read.set()
        with self._lock:
            answer = self.pending.pop(0) if len(self.pending) > 1 else self.pending[0]
        if isinstance(answer, grpc.StatusCode):
            context.abort(answer, f"table {request.table}: {answer.name}")
        return job_service_pb2.GetProgressResponse(progress=types_pb2.Progress(pending=answer))

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]

    def claim_asks(self) -> list[Any]:
        """The ClaimRefresh requests that asked for the claim (not renewals)."""
        return [r for name, r in self.sent if name == "ClaimRefresh" and not r.renew]

    def renewals(self) -> list[Any]:
        return [r for name, r in self.sent if name == "ClaimRefresh" and r.renew]


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, str]]:
    service = StandIn()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    job_service_pb2_grpc.add_JobServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, f"http://127.0.0.1:{port}"
    server.stop(None)


def test_every_call_of_a_claimed_refresh_carries_the_claim(stand_in):
    service, url = stand_in
    db = populus.connect(url=url)
    table = db.table("Claimed", key_source=lambda: iter(ids(25_000)), make=Made())
    assert table.populate(reserve_jobs=True, refresh_interval=30) == {"success_count": 0, "error_list": []}
    # Three Refresh calls (10,000 keys each at most), then no Reserve: the final answer said nothing is pending.
    assert service.names() == ["ClaimRefresh", "Refresh", "Refresh", "Refresh"]
    claim = service.sent[0][1]
    assert claim.table == "Claimed" and claim.claim_id == table.refresh_claim.id
    assert claim.min_interval.seconds == 30 and not claim.HasField("claim_timeout")
    assert [r.claim_id for _, r in service.sent[1:]] == [claim.claim_id] * 3
    assert [r.final for _, r in service.sent[1:]] == [False, False, True]

    # The same id on the next populate of the Table; another Table object has one of its own;
    # an explicit jobs.refresh() and direct mode claim nothing.
    service.sent.clear()
    table.populate(reserve_jobs=True)
    other = db.table("Claimed", key_source=ids(3), make=Made())
    other.populate(reserve_jobs=True)
    other.jobs.refresh()
    other.populate()
    claims = [r for name, r in service.sent if name == "ClaimRefresh"]
    assert [c.claim_id for c in claims] == [table.refresh_claim.id, other.refresh_claim.id]
    assert table.refresh_claim.id != other.refresh_claim.id
    assert claims[0].min_interval.seconds == 0 and claims[0].min_interval.nanos == 0
    assert [r.claim_id for name, r in service.sent if name == "Refresh"][-2:] == ["", ""]

    # A key source that raises midway: the claim is abandoned under its id, and the error raised.
    def midway() -> Iterator[dict[str, int]]:
        yield from ids(21_000)
        raise KeyError("gone")

    service.sent.clear()
    broken = db.table("Claimed", key_source=midway, make=Made())
    with pytest.raises(KeyError):
        broken.populate(reserve_jobs=True)
    assert service.names() == ["ClaimRefresh", "Refresh", "AbandonRefresh"]
    abandon = service.sent[2][1]
    assert abandon.table == "Claimed" and abandon.claim_id == broken.refresh_claim.id == service.sent[1][1].claim_id
    assert not broken.refresh_claim.refreshing
    db.close()


def test_a_second_populate_of_the_same_table_object_is_held_back_locally(stand_in):
    service, url = stand_in
    service.hold = threading.Event()
    db = populus.connect(url=url)
    source = CountingSource(ids(3))
    table = db.table("Held", key_source=source, make=Made())
    first: list[Any] = []
    thread = threading.Thread(target=lambda: first.append(table.populate(reserve_jobs=True)))
    thread.start()
    try:
        assert service.refreshing.wait(20)
        assert table.refresh_claim.refreshing
        # Held back without a ClaimRefresh: it goes straight to reserving (nothing is known of pending jobs).
        assert table.populate(reserve_jobs=True) == {"success_count": 0, "error_list": []}
        assert source.reads == 1
    finally:
        service.hold.set()
        thread.join(20)
    assert first == [{"success_count": 0, "error_list": []}]
    assert service.names() == ["ClaimRefresh", "Refresh", "Reserve"]
    assert not table.refresh_claim.refreshing
    db.close()


def test_a_server_older_than_refresh_claims_gets_the_refresh_as_before(stand_in):
    service, url = stand_in
    service.claims = False
    db = populus.connect(url=url)
    source = CountingSource(ids(3))
    table = db.table("Older", key_source=source, make=Made())
    assert table.populate(reserve_jobs=True, refresh_interval=60) == {"success_count": 0, "error_list": []}
    assert table.populate(reserve_jobs=True, refresh_interval=60) == {"success_count": 0, "error_list": []}
    assert source.reads == 2
    assert service.names() == ["ClaimRefresh", "Refresh"] * 2
    assert all(r.claim_id == "" for name, r in service.sent if name == "Refresh")
    assert not table.refresh_claim.refreshing
    db.close()


PARAMS = RefreshParams(priority=5, stale_timeout=3600, orphan_timeout=None, delay=0)


def seconds(d: Any) -> float:
    return d.seconds + d.nanos / 1e9


def test_a_populate_held_back_by_a_running_refresh_of_nothing_pending_waits_for_it(stand_in):
    service, url = stand_in
    # Running with nothing pending twice, then a refresh finished since: held back as recent, jobs pending.
    service.claim_answers = [held_back(True, False), held_back(True, False), held_back(False, True)]
    db = populus.connect(url=url)
    connection = db.connection
    source = CountingSource(ids(3))
    claim = RefreshClaim()
    started = time.monotonic()
    outcome = claimed_refresh(connection, "Waiting", source, PARAMS, claim, 0, GracefulStop())
    assert outcome == ClaimedRefreshOutcome(held_back="recent", any_pending=True)
    # Paused 0.25 s, then 0.5 s.
    assert time.monotonic() - started >= 0.7
    assert source.reads == 0
    assert service.names() == ["ClaimRefresh"] * 3
    asks = service.claim_asks()
    assert all(a.claim_id == claim.id and a.table == "Waiting" and not a.renew for a in asks)
    assert seconds(asks[0].min_interval) == 0
    # Later asks take any refresh that finished since before the first ask as recent: the seconds
    # since then, exactly (fractions kept, nothing added).
    waited = [seconds(a.min_interval) for a in asks[1:]]
    assert 0.25 <= waited[0] < waited[1] and waited[1] >= 0.75
    assert all(w != int(w) for w in waited)
    assert all(w <= t - started for w, t in zip(waited, service.times[1:]))
    assert service.times[2] - service.times[1] >= 0.45
    assert not claim.refreshing

    # A refresh_interval longer than the time waited is kept.
    service.sent.clear()
    service.claim_answers = [held_back(True, False), held_back(False, False)]
    assert claimed_refresh(connection, "Waiting", source, PARAMS, claim, 30, GracefulStop()) == ClaimedRefreshOutcome(
        held_back="recent", any_pending=False
    )
    assert [seconds(a.min_interval) for a in service.claim_asks()] == [30, 30]

    # Held back with jobs pending, or pending unknown (an older server), or recent: no wait, no second ask.
    for answer in (held_back(True, True), held_back(True, None), held_back(False, False)):
        service.sent.clear()
        service.claim_answers = [answer]
        outcome = claimed_refresh(connection, "Waiting", source, PARAMS, claim, 0, GracefulStop())
        assert outcome.held_back == ("running" if answer.running else "recent")
        assert service.names() == ["ClaimRefresh"]

    # The running refresh was abandoned (or lapsed) while waiting: granted to the waiter, which refreshes.
    service.sent.clear()
    service.claim_answers = [held_back(True, False), job_service_pb2.ClaimRefreshResponse(granted=True)]
    outcome = claimed_refresh(connection, "Waiting", source, PARAMS, claim, 0, GracefulStop())
    assert outcome == ClaimedRefreshOutcome(held_back=None, any_pending=False)
    assert source.reads == 1
    assert service.names() == ["ClaimRefresh", "ClaimRefresh", "Refresh"]
    assert service.sent[2][1].claim_id == claim.id and service.sent[2][1].final
    db.close()


def test_a_stop_ends_the_wait_for_a_running_refresh(stand_in):
    service, url = stand_in
    service.claim_answers = [held_back(True, False)]  # running, forever
    db = populus.connect(url=url)
    source = CountingSource(ids(3))
    table = db.table("Stopped", key_source=source, make=Made())

    # Stopped before: one ask, held back as it stood (nothing pending: nothing to reserve).
    stop = GracefulStop()
    stop.stop(0)
    started = time.monotonic()
    assert table.populate(reserve_jobs=True, stop=stop) == {"success_count": 0, "error_list": []}
    assert time.monotonic() - started < 2.0
    assert service.names() == ["ClaimRefresh"]
    outcome = claimed_refresh(db.connection, "Stopped", source, PARAMS, RefreshClaim(), 0, stop)
    assert outcome == ClaimedRefreshOutcome(held_back="running", any_pending=False)

    # Stopped while waiting: asked at 0, 0.25, 0.75 and 1.75 s, then stopped in the 2 s pause that
    # follows the fourth ask. It ends then, with no further ask.
    service.sent.clear()
    stop = GracefulStop()
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(table.populate(reserve_jobs=True, stop=stop)))
    thread.start()
    deadline = time.monotonic() + 20
    while len(service.claim_asks()) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(service.claim_asks()) == 4 and thread.is_alive()
    stopped_at = time.monotonic()
    stop.stop(0)
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - stopped_at < 2.0
    assert done == [{"success_count": 0, "error_list": []}]
    assert service.names() == ["ClaimRefresh"] * 4
    assert source.reads == 0 and not table.refresh_claim.refreshing
    db.close()


def test_the_wait_for_a_running_refresh_ends_after_wait_at_most_s(stand_in, monkeypatch):
    # A refresh that runs longer than the ceiling (here 0.6 s, pauses of 0.05 s doubling to 0.2 s):
    # populate returns held back as it stood, with nothing done, rather than stall on the table.
    service, url = stand_in
    monkeypatch.setattr(claimed_refresh_module, "WAIT_AT_MOST_S", 0.6)
    monkeypatch.setattr(claimed_refresh_module, "WAIT_FIRST_S", 0.05)
    monkeypatch.setattr(claimed_refresh_module, "WAIT_LONGEST_S", 0.2)
    service.claim_answers = [held_back(True, False)]  # running, forever
    db = populus.connect(url=url)
    source = CountingSource(ids(3))
    claim = RefreshClaim()
    started = time.monotonic()
    outcome = claimed_refresh(db.connection, "Ceiling", source, PARAMS, claim, 0, GracefulStop())
    elapsed = time.monotonic() - started
    assert outcome == ClaimedRefreshOutcome(held_back="running", any_pending=False)
    assert 0.6 <= elapsed < 0.6 + 2.0
    # Asked at 0, 0.05, 0.15, 0.35 and 0.55 s, and at 0.6 s (the last pause cut short to the
    # ceiling): a loaded machine asks fewer times, never more.
    asks = service.claim_asks()
    assert 2 <= len(asks) <= 6 and service.names() == ["ClaimRefresh"] * len(asks)
    waited = [seconds(a.min_interval) for a in asks]
    assert waited[0] == 0 and waited == sorted(waited) and waited[-1] >= 0.6
    assert source.reads == 0 and not claim.refreshing

    # Through populate: nothing pending, so nothing reserved either.
    service.sent.clear()
    table = db.table("Ceiling", key_source=source, make=Made())
    started = time.monotonic()
    assert table.populate(reserve_jobs=True, stop=GracefulStop()) == {"success_count": 0, "error_list": []}
    assert 0.6 <= time.monotonic() - started < 0.6 + 2.0
    assert 2 <= len(service.claim_asks()) <= 6 and set(service.names()) == {"ClaimRefresh"}
    assert source.reads == 0 and not table.refresh_claim.refreshing
    db.close()


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler, reason="SIGINT has a handler of the test runner's"
)
def test_a_signal_ends_the_wait_for_a_running_refresh(stand_in):
    # populate in the main thread handles SIGINT during the wait as during its reserve loop: a stop.
    service, url = stand_in
    service.claim_answers = [held_back(True, False)]
    db = populus.connect(url=url)
    table = db.table("Signalled", key_source=ids(3), make=Made())

    def interrupt() -> None:
        service.asked.wait(10)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt)
    sender.start()
    started = time.monotonic()
    assert table.populate(reserve_jobs=True, grace=0) == {"success_count": 0, "error_list": []}
    sender.join(10)
    assert 0.4 < time.monotonic() - started < 3
    assert set(service.names()) == {"ClaimRefresh"}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    db.close()


def test_a_claimed_refresh_renews_its_claim_while_it_runs(stand_in, monkeypatch):
    service, url = stand_in
    monkeypatch.setattr(claimed_refresh_module, "CLAIM_KEEPALIVE_S", 0.05)
    db = populus.connect(url=url)
    source = CountingSource(ids(3), sleep=0.3)
    table = db.table("Renewed", key_source=source, make=Made())
    assert table.populate(reserve_jobs=True) == {"success_count": 0, "error_list": []}
    ended = len(service.sent)
    renewals = service.renewals()
    assert len(renewals) >= 1
    for r in renewals:
        assert r.table == "Renewed" and r.claim_id == table.refresh_claim.id and r.renew
        # A day's min_interval: a server older than renew would answer it "recent", not grant it.
        assert seconds(r.min_interval) == 86_400 and not r.HasField("claim_timeout")
    # The claim asked for once, then one Refresh call (final); the renewals in between.
    others = [(name, r) for name, r in service.sent if not (name == "ClaimRefresh" and r.renew)]
    assert [name for name, _ in others] == ["ClaimRefresh", "Refresh"] and others[1][1].final
    assert service.sent[0] == others[0]
    # None after the refresh ended, and no thread left renewing.
    time.sleep(0.3)
    assert len(service.sent) == ended
    assert not [t for t in threading.enumerate() if t.name.startswith("populus-refresh-claim-")]

    # A key source that raises: the renewals end too, before the claim is given back.
    service.sent.clear()
    broken = db.table("Renewed", key_source=CountingSource(ids(3), sleep=0.3, fail=RuntimeError("down")), make=Made())
    with pytest.raises(RuntimeError, match="^down$"):
        broken.populate(reserve_jobs=True)
    assert len(service.renewals()) >= 1
    assert service.names()[0] == "ClaimRefresh" and service.names()[-1] == "AbandonRefresh"
    ended = len(service.sent)
    time.sleep(0.3)
    assert len(service.sent) == ended
    assert not [t for t in threading.enumerate() if t.name.startswith("populus-refresh-claim-")]

    # A quick refresh with the default interval (200 s) sends none.
    monkeypatch.undo()
    service.sent.clear()
    assert db.table("Renewed", key_source=ids(3), make=Made()).populate(reserve_jobs=True) == {"success_count": 0, "error_list": []}
    assert service.renewals() == []
    db.close()


def test_renewals_end_after_most_renewals(stand_in, monkeypatch):
    # A key source that hangs: the claim is renewed MOST_RENEWALS times (here 2), then left to lapse.
    service, url = stand_in
    monkeypatch.setattr(claimed_refresh_module, "CLAIM_KEEPALIVE_S", 0.05)
    monkeypatch.setattr(claimed_refresh_module, "MOST_RENEWALS", 2)
    db = populus.connect(url=url)

    def slow() -> list[dict[str, int]]:
        # Gives its keys once two renewals are in, and 0.5 s (ten intervals) after that.
        deadline = time.monotonic() + 20
        while len(service.renewals()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        return ids(3)

    table = db.table("Capped", key_source=slow, make=Made())
    assert table.populate(reserve_jobs=True) == {"success_count": 0, "error_list": []}
    renewals = service.renewals()
    assert len(renewals) == 2
    for r in renewals:
        assert r.table == "Capped" and r.claim_id == table.refresh_claim.id and r.renew
        assert seconds(r.min_interval) == 86_400
    others = [name for name, r in service.sent if not (name == "ClaimRefresh" and r.renew)]
    assert others == ["ClaimRefresh", "Refresh"]
    assert not [t for t in threading.enumerate() if t.name.startswith("populus-refresh-claim-")]
    db.close()


def stop_when_asked(asked: threading.Event, stop: GracefulStop) -> None:
    """Stops ``stop`` (in a thread) once the stand-in is asked (``asked``, cleared here)."""
    asked.clear()
    threading.Thread(target=lambda: (asked.wait(20), stop.stop(0)), daemon=True).start()


def assert_a_stop_ends_the_sleep(service, table, monkeypatch, asked: threading.Event | None = None, call: str = "ClaimRefresh") -> GracefulStop:
    """A stop during the wait's sleep between two asks (``call``s; ``asked`` is set by each): None
    at once, no further ask. Answers that stop, stopped."""
    monkeypatch.setattr(claimed_refresh_module, "POLL_WITHOUT_LONG_POLL_S", 10.0)
    service.sent.clear()
    stop = GracefulStop()
    stop_when_asked(service.asked if asked is None else asked, stop)
    started = time.monotonic()
    assert table.wait_for_work(wait=30, stop=stop) is None
    assert time.monotonic() - started < 2.0
    assert service.names() == [call]
    return stop


def test_wait_for_work_long_polls_under_the_claim_and_asks_an_older_server_again_soon(stand_in, monkeypatch):
    service, url = stand_in
    # Held back at once with nothing pending, whatever the wait: a server older than the long-poll.
    service.claim_answers = [held_back(False, False)]
    db = populus.connect(url=url)
    table = db.table("Idle", key_source=ids(3), make=Made())
    # A wait shorter than POLL_WITHOUT_LONG_POLL_S: one long-poll, its rest slept here, no second call.
    started = time.monotonic()
    assert table.wait_for_work(wait=0.4, refresh_interval=30) is None
    assert 0.4 <= time.monotonic() - started < 3.0
    [ask] = service.claim_asks()
    assert service.names() == ["ClaimRefresh"]
    assert ask.table == "Idle" and ask.claim_id == table.refresh_claim.id and not ask.renew
    assert seconds(ask.min_interval) == 30 and seconds(ask.claim_timeout) == 60 and seconds(ask.wait) == 0.4
    # Its call's deadline: the wait and 30 s (what the stand-in had left of it when asked; gRPC
    # sends a timeout rounded up to its unit, so a little more than 30.4 s can arrive).
    assert 29 < service.deadlines[0] <= 31

    # A longer wait: asked again after POLL_WITHOUT_LONG_POLL_S (10 s; 0.3 s here), not after the
    # rest of that long-poll (here the whole 1.2 s wait), each long-poll the rest of the wait.
    monkeypatch.setattr(claimed_refresh_module, "POLL_WITHOUT_LONG_POLL_S", 0.3)
    service.sent.clear()
    service.times.clear()
    started = time.monotonic()
    assert table.wait_for_work(wait=1.2, refresh_interval=30) is None
    assert 1.2 <= time.monotonic() - started < 4.0
    asks = service.claim_asks()
    # Every 0.3 s over 1.2 s: 4 asks (a loaded machine asks fewer times, never more).
    assert 2 <= len(asks) <= 4 and service.names() == ["ClaimRefresh"] * len(asks)
    waits = [seconds(a.wait) for a in asks]
    assert waits[0] == 1.2 and all(0 < later < earlier for earlier, later in zip(waits, waits[1:])), waits
    gaps = [later - earlier for earlier, later in zip(service.times, service.times[1:])]
    assert all(gap >= 0.25 for gap in gaps), gaps

    # A stop ends that sleep: None at once, no further ask.
    stop = assert_a_stop_ends_the_sleep(service, table, monkeypatch)
    # Stopped before: no call at all.
    service.sent.clear()
    assert table.wait_for_work(wait=30, stop=stop) is None
    assert service.names() == []
    db.close()


def test_wait_for_work_answers_refresh_when_granted_and_jobs_when_told_of_a_pending_job(stand_in):
    service, url = stand_in
    db = populus.connect(url=url)
    table = db.table("Told", key_source=ids(3), make=Made())
    granted_with_jobs = job_service_pb2.ClaimRefreshResponse(granted=True, any_pending=True)
    for answer, found in (
        (job_service_pb2.ClaimRefreshResponse(granted=True), "refresh"),
        (granted_with_jobs, "refresh"),  # granted: this process holds the claim, its populate refreshes
        (held_back(True, True), "jobs"),
        (held_back(False, True), "jobs"),
    ):
        service.sent.clear()
        service.claim_answers = [answer]
        started = time.monotonic()
        assert table.wait_for_work(wait=30, refresh_interval=30) == found
        assert time.monotonic() - started < 2.0
        assert service.names() == ["ClaimRefresh"]
    # Pending unknown (a server older than any_pending): no work known, the wait goes on.
    service.sent.clear()
    service.claim_answers = [held_back(True, None)]
    assert table.wait_for_work(wait=0.3) is None
    assert service.names() == ["ClaimRefresh"]
    # A refresh of this process running: "refresh" with no call.
    service.sent.clear()
    assert table.refresh_claim._begin()
    try:
        assert table.wait_for_work(wait=30) == "refresh"
    finally:
        table.refresh_claim._end()
    assert service.names() == []
    db.close()


def test_wait_for_work_waits_out_a_server_older_than_refresh_claims(stand_in, monkeypatch):
    service, url = stand_in
    service.claims = False  # UNIMPLEMENTED
    db = populus.connect(url=url)
    table = db.table("Older", key_source=ids(3), make=Made())
    # The wait slept here (POLL_WITHOUT_LONG_POLL_S at most), then "refresh": the worker's next pass
    # refreshes and reserves as it always did.
    started = time.monotonic()
    assert table.wait_for_work(wait=0.5) == "refresh"
    assert 0.5 <= time.monotonic() - started < 2.5
    assert service.names() == ["ClaimRefresh"]
    # A longer wait: POLL_WITHOUT_LONG_POLL_S (10 s; 0.3 s here), not the rest of it.
    monkeypatch.setattr(claimed_refresh_module, "POLL_WITHOUT_LONG_POLL_S", 0.3)
    service.sent.clear()
    started = time.monotonic()
    assert table.wait_for_work(wait=30) == "refresh"
    assert 0.3 <= time.monotonic() - started < 2.5
    assert service.names() == ["ClaimRefresh"]
    # A stop ends that sleep: None.
    assert_a_stop_ends_the_sleep(service, table, monkeypatch)
    db.close()


def test_a_wait_for_work_left_unanswered_past_its_deadline_is_unavailable(stand_in, monkeypatch):
    # The server answers a long-poll by the end of its wait: one still silent at the deadline (the
    # wait and 30 s; 0.6 s here) hangs, or its connection does. UnavailableError, as populus-worker's
    # SDK raises it, so that a worker sleeps and asks again rather than exit.
    service, url = stand_in
    service.claim_hold = threading.Event()
    monkeypatch.setattr(claimed_refresh_module, "_LONG_POLL_DEADLINE_MARGIN_S", 0.6)
    db = populus.connect(url=url)
    table = db.table("Hung", key_source=ids(3), make=Made())
    started = time.monotonic()
    with pytest.raises(populus.UnavailableError, match=r"^Hung: the server did not answer a wait for work within 1 s$") as raised:
        table.wait_for_work(wait=0.3, refresh_interval=30)
    assert 0.85 <= time.monotonic() - started < 5
    assert isinstance(raised.value.__cause__, populus.PopulusError) and raised.value.__cause__.code == grpc.StatusCode.DEADLINE_EXCEEDED
    service.claim_hold.set()
    db.close()


def test_wait_for_work_without_auto_refresh_reads_the_counts_and_asks_for_no_claim(stand_in, monkeypatch):
    service, url = stand_in
    monkeypatch.setattr(claimed_refresh_module, "POLL_WITHOUT_LONG_POLL_S", 0.3)
    monkeypatch.setattr(populus.config.jobs, "auto_refresh", False)
    db = populus.connect(url=url)
    table = db.table("Counted", key_source=ids(3), make=Made())
    # Never refreshed (NOT_FOUND: none pending), then none pending, then two: "jobs" on the third
    # read, POLL_WITHOUT_LONG_POLL_S apart.
    service.pending = [grpc.StatusCode.NOT_FOUND, 0, 2]
    started = time.monotonic()
    assert table.wait_for_work(wait=30) == "jobs"
    assert 0.6 <= time.monotonic() - started < 4.0
    assert service.names() == ["GetProgress"] * 3
    assert all(r.table == "Counted" for _, r in service.sent)
    gaps = [later - earlier for earlier, later in zip(service.times, service.times[1:])]
    assert all(gap >= 0.25 for gap in gaps), gaps
    # None pending within the wait: None; the last read's pause cut to what was left of it.
    service.sent.clear()
    service.pending = [0]
    started = time.monotonic()
    assert table.wait_for_work(wait=0.4) is None
    assert 0.4 <= time.monotonic() - started < 2.5
    assert 1 <= len(service.sent) <= 2 and set(service.names()) == {"GetProgress"}
    # Any other error is raised.
    service.pending = [grpc.StatusCode.PERMISSION_DENIED]
    with pytest.raises(populus.PermissionDeniedError):
        table.wait_for_work(wait=30)
    # A stop ends the pause: None.
    service.pending = [0]
    assert_a_stop_ends_the_sleep(service, table, monkeypatch, asked=service.progress_read, call="GetProgress")
    # Not one ClaimRefresh in all.
    assert service.claim_asks() == []
    db.close()
