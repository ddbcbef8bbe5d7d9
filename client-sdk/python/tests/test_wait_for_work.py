"""``Table.wait_for_work()``, an idle worker's wait on the server (ClaimRefresh
long-polls), against real servers on each dialect: a job queued by another
client while it waits ends the wait at once ("jobs"), well before it would
have ended (and before the server's own recheck, 7.5 to 12.5 s); nothing to
do ends it None when the wait is over; a refresh that comes due
(refresh_interval passed) is granted to the waiter ("refresh"), whose next
populate refreshes under that claim while another's is held back; a stop
cancels the long-poll in flight (None at once, and the server's
populus_refresh_claims_waiting gauge drops back); with config.jobs.auto_refresh
off it takes no claim and reads the table's counts instead (a table never
refreshed has none pending); bad options, refresh_interval=0 among them, are
refused before any call. ``python -m populus.worker``'s idle wait: tests/test_worker.py;
against a stand-in server (fields sent, an older server): test_refresh_claims.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import populus
import pytest
from conftest import Server, metric, wait_until
from populus.graceful_stop import GracefulStop
from populus.v1 import job_service_pb2
from populus.wire import duration

WAITING = "populus_refresh_claims_waiting"


def waiting(server: Server) -> float:
    return metric(server, WAITING)


def make(key: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"id": key["id"]}


class Source:
    """A key source (a function) that counts its reads."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.reads = 0

    def __call__(self) -> list[dict[str, Any]]:
        self.reads += 1
        return list(self.keys)


def in_thread(body: Callable[[], Any]) -> tuple[threading.Thread, list[Any], list[float]]:
    """Runs ``body`` in a thread: the thread, then [its answer] and [the seconds it took] once done."""
    answer: list[Any] = []
    took: list[float] = []

    def run() -> None:
        started = time.monotonic()
        answer.append(body())
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, answer, took


def ask_claim(db: Any, table: str, min_interval: float) -> Any:
    """A ClaimRefresh under a claim id of no Table's: what another worker would be answered."""
    request = job_service_pb2.ClaimRefreshRequest(table=table, claim_id="another-worker", min_interval=duration(min_interval))
    return db.connection.call("ClaimRefresh", request)


def test_a_job_queued_meanwhile_ends_the_wait_at_once(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}], make=make)
    assert table.populate(reserve_jobs=True) == {"success_count": 1, "error_list": []}
    # Nothing pending, refreshed just now (an hour's interval: not due): the wait is on the server.
    thread, answer, took = in_thread(lambda: table.wait_for_work(wait=30, refresh_interval=3600))
    wait_until("the long-poll to wait on the server", lambda: waiting(server) == 1, timeout=15)
    other = populus.connect(url=server.url)
    assert other.table(table_name, key_source=[{"id": 2}], make=make).jobs.refresh()["added"] == 1
    thread.join(25)
    assert answer == ["jobs"]
    assert took[0] < 6, f"answered {took[0]:.1f} s into a 30 s wait"
    wait_until("the long-poll to end on the server", lambda: waiting(server) == 0, timeout=10)
    # Woken by the job, not granted the claim: another worker's refresh is not held back as running.
    assert not ask_claim(other, table_name, 3600).running
    # A job pending already: answered at once.
    started = time.monotonic()
    assert table.wait_for_work(wait=30, refresh_interval=3600) == "jobs"
    assert time.monotonic() - started < 6
    assert table.populate(reserve_jobs=True, refresh=False) == {"success_count": 1, "error_list": []}
    other.close()
    db.close()


def test_nothing_to_do_ends_the_wait_none(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}], make=make)
    assert table.populate(reserve_jobs=True) == {"success_count": 1, "error_list": []}
    started = time.monotonic()
    assert table.wait_for_work(wait=1, refresh_interval=3600) is None
    assert 0.9 <= time.monotonic() - started < 6
    # config.jobs.refresh_interval is the default interval, as populate's.
    populus.config.jobs.refresh_interval = 3600
    try:
        started = time.monotonic()
        assert table.wait_for_work(wait=1) is None
        assert 0.9 <= time.monotonic() - started < 6
    finally:
        populus.config.jobs.refresh_interval = 0
    # Where that is 0 (the SDK's default), 30 s: refreshed just now, not due within the wait. (With
    # 0 a refresh would always be due, and the wait would end at once, "refresh".)
    started = time.monotonic()
    assert table.wait_for_work(wait=1) is None
    assert 0.9 <= time.monotonic() - started < 6
    # wait=0: no wait at all.
    started = time.monotonic()
    assert table.wait_for_work(wait=0, refresh_interval=3600) is None
    assert time.monotonic() - started < 1
    assert waiting(server) == 0
    db.close()


def test_a_refresh_come_due_is_granted_to_the_waiter(server, table_name):
    db = populus.connect(url=server.url)
    source = Source([{"id": 0}])
    table = db.table(table_name, key_source=source, make=make)
    assert table.populate(reserve_jobs=True) == {"success_count": 1, "error_list": []}
    refreshed_at = time.monotonic()
    # Due 2 s after that refresh (the server spreads the waiters over a second more): granted then.
    assert table.wait_for_work(wait=30, refresh_interval=2) == "refresh"
    assert 1.5 <= time.monotonic() - refreshed_at < 25
    assert source.reads == 1 and not table.refresh_claim.refreshing
    # This process holds the claim: another worker is held back by it as by a running refresh.
    held = ask_claim(db, table_name, 0)
    assert not held.granted and held.running
    # The next populate of this Table (the same interval, as a worker's) is granted it again under
    # its id, reads the key source and makes the new key.
    source.keys.append({"id": 1})
    assert table.populate(reserve_jobs=True, refresh_interval=2) == {"success_count": 1, "error_list": []}
    assert source.reads == 2
    assert sorted(r["key"]["id"] for r in table.fetch()) == [0, 1]
    # Its final call ended the claim and recorded the refresh: held back as recent now, not running.
    after = ask_claim(db, table_name, 3600)
    assert not after.granted and not after.running
    db.close()


def test_a_stop_cancels_the_wait_on_the_server(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}], make=make)
    assert table.populate(reserve_jobs=True) == {"success_count": 1, "error_list": []}
    stop = GracefulStop()
    thread, answer, took = in_thread(lambda: table.wait_for_work(wait=60, refresh_interval=3600, stop=stop))
    wait_until("the long-poll to wait on the server", lambda: waiting(server) == 1, timeout=15)
    stopped_at = time.monotonic()
    stop.stop(30)  # the grace period does not matter: stopping ends the wait
    thread.join(20)
    assert answer == [None]
    assert time.monotonic() - stopped_at < 5
    # The call was cancelled, and the server heard it: no long-poll left waiting there.
    wait_until("the server to end the cancelled long-poll", lambda: waiting(server) == 0, timeout=10)
    # Stopped before: no call, None at once.
    started = time.monotonic()
    assert table.wait_for_work(wait=60, refresh_interval=3600, stop=stop) is None
    assert time.monotonic() - started < 1
    # A refresh of this process running: its populate will have work, no call either.
    assert table.refresh_claim._begin()
    try:
        assert table.wait_for_work(wait=60, refresh_interval=3600) == "refresh"
    finally:
        table.refresh_claim._end()
    stop.dispose()
    db.close()


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # nothing reaches the server
def test_bad_options_are_refused_before_any_call(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}], make=make)
    for bad in (-1, 86_401, "60", float("nan"), float("inf"), True, None):
        with pytest.raises(populus.InvalidArgumentError) as raised:
            table.wait_for_work(wait=bad)
        assert str(raised.value) == f"{table_name}.wait_for_work: wait must be from 0 to 86400 seconds, got {bad!r}"
    # 0 too (populate's "only a running refresh holds it back"): a refresh would always be due.
    for bad in (0, 0.0, -0.5, 86_400.5, "10", float("nan"), False):
        with pytest.raises(populus.InvalidArgumentError) as raised:
            table.wait_for_work(wait=1, refresh_interval=bad)
        assert str(raised.value) == (
            f"{table_name}.wait_for_work: refresh_interval must be more than 0 and at most 86400 seconds "
            f"(with 0 a refresh is always due, and the wait would end at once), got {bad!r}"
        )
    # Nothing reached the server: a ClaimRefresh of a table never refreshed would have been granted.
    assert ask_claim(db, table_name, 0).granted
    db.close()


def test_without_auto_refresh_the_wait_reads_the_counts_and_takes_no_claim(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}], make=make)
    auto_refresh = populus.config.jobs.auto_refresh
    populus.config.jobs.auto_refresh = False
    try:
        # A table never refreshed (GetProgress: NOT_FOUND) has nothing pending: None after the wait.
        # A long-poll would have been granted the claim of this table at once ("refresh").
        started = time.monotonic()
        assert table.wait_for_work(wait=0.5, refresh_interval=3600) is None
        assert 0.4 <= time.monotonic() - started < 6
        assert waiting(server) == 0
        # A job pending: "jobs" at once.
        other = populus.connect(url=server.url)
        assert other.table(table_name, key_source=[{"id": 1}], make=make).jobs.refresh()["added"] == 1
        started = time.monotonic()
        assert table.wait_for_work(wait=30) == "jobs"
        assert time.monotonic() - started < 6
        # Made: nothing pending again, None after the wait.
        assert table.populate(reserve_jobs=True) == {"success_count": 1, "error_list": []}
        assert table.wait_for_work(wait=0.5) is None
    finally:
        populus.config.jobs.auto_refresh = auto_refresh
    # No claim was taken by the waits: another worker's ClaimRefresh is granted.
    assert ask_claim(other, table_name, 0).granted
    other.close()
    db.close()
