"""populate's refresh claims (promise 4): against real servers on each
dialect, concurrent populate(reserve_jobs=True) calls read a slow key source
once and make every key once; a refresh that finished less than
refresh_interval ago is not repeated; a key source that raises gives the
claim back. Against a stand-in server: every Refresh call of a claimed
refresh carries the claim, a failed one is abandoned under that claim, a
second populate of the same Table in this process sends no ClaimRefresh while
the first refreshes, and a server older than claims gets populate's refresh
as before. Bad refresh_interval options and settings change nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent import futures
from typing import Any, Iterator

import grpc
import populus
import pytest
from conftest import run_script, script_env
from populus.v1 import job_service_pb2, job_service_pb2_grpc


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
    """A make that records the ids it made (from any thread)."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, key: dict[str, Any], ctx: Any) -> dict[str, Any]:
        time.sleep(0.005)
        with self._lock:
            self.ids.append(key["id"])
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


def test_concurrent_populates_of_a_new_table_read_it_once(server, table_name):
    # No job and no table yet: the populates held back hear that nothing is pending and end at once.
    made = Made()
    source = CountingSource(ids(30), sleep=0.5)
    connections = [populus.connect(url=server.url) for _ in range(3)]
    tables = [db.table(table_name, key_source=source, make=made) for db in connections]
    for t in tables:
        with pytest.raises(populus.TableNotFoundError):
            t.jobs.progress()
    results = run_threads(3, lambda i: tables[i].populate(reserve_jobs=True))
    assert source.reads == 1
    assert Counter(made.ids) == Counter(range(30))
    assert sorted(r["success_count"] for r in results) == [0, 0, 30]
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


class StandIn(job_service_pb2_grpc.JobServiceServicer):
    """A stand-in server that records what it was sent. ``claims``: whether it
    knows ClaimRefresh (else it answers UNIMPLEMENTED, as a server older than
    refresh claims). Refresh answers nothing pending, and waits for ``hold``
    when that is set; Reserve answers no job."""

    def __init__(self, claims: bool = True) -> None:
        self.claims = claims
        self.sent: list[tuple[str, Any]] = []
        self.hold: threading.Event | None = None
        self.refreshing = threading.Event()

    def ClaimRefresh(self, request, context):
        self.sent.append(("ClaimRefresh", request))
        if not self.claims:
            return super().ClaimRefresh(request, context)
        return job_service_pb2.ClaimRefreshResponse(granted=True)

    def AbandonRefresh(self, request, context):
        self.sent.append(("AbandonRefresh", request))
        return job_service_pb2.AbandonRefreshResponse(released=True)

    def Refresh(self, request, context):
        self.sent.append(("Refresh", request))
        self.refreshing.set()
        if self.hold is not None:
            self.hold.wait(20)
        return job_service_pb2.RefreshResponse(any_pending=False) if request.final else job_service_pb2.RefreshResponse()

    def Reserve(self, request, context):
        self.sent.append(("Reserve", request))
        return job_service_pb2.ReserveResponse()

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


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
