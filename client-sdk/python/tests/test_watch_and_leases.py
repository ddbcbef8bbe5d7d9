"""jobs.watch() as an iterator over the server's Watch stream, resumed by
cursor; and leases: renewed by the heartbeat thread through makes longer
than the lease, and a lost lease visible to make through ctx.signal."""

from __future__ import annotations

import threading
import time

import populus
import pytest


def test_watch_streams_every_change_and_resumes_by_cursor(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": i} for i in range(8)], make=lambda key, ctx: {"id": key["id"]})
    assert table.jobs.refresh()["added"] == 8
    updates: list[dict] = []
    done = threading.Event()
    watch = table.jobs.watch()

    def follow() -> None:
        for update in watch:
            updates.append(update)
            if update["progress"] is not None and update["progress"]["target"] == 8 and update["progress"]["reserved"] == 0:
                done.set()
                return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    # The snapshot comes first: counts, no events.
    deadline = time.monotonic() + 20
    while not updates and time.monotonic() < deadline:
        time.sleep(0.01)
    snapshot = updates[0]
    assert snapshot["events"] == [] and snapshot["progress"]["pending"] == 8 and snapshot["cursor"] != ""
    assert table.populate(reserve_jobs=True) == {"success_count": 8, "error_list": []}
    assert done.wait(20), updates[-1]
    watch.close()
    follower.join(5)
    events = [(e["key"]["id"], e["status"], e["committed"]) for u in updates for e in u["events"]]
    for i in range(8):
        assert (i, "reserved", False) in events and (i, "deleted", True) in events
        assert events.index((i, "reserved", False)) < events.index((i, "deleted", True))

    # Resuming after the snapshot replays every event since, in the same order, then the counts.
    replayed: list[tuple] = []
    with table.jobs.watch(cursor=snapshot["cursor"]) as resumed:
        for update in resumed:
            replayed.extend((e["key"]["id"], e["status"], e["committed"]) for e in update["events"])
            if len(replayed) >= len(events):
                break
    assert replayed == events
    db.close()


def test_watch_errors_are_typed(server, table_name):
    db = populus.connect(url=server.url)
    with pytest.raises(populus.TableNotFoundError) as raised:
        next(db.table(table_name, key_source=[], make=lambda k, c: None).jobs.watch())
    assert str(raised.value) == f'table "{table_name}" does not exist; a refresh declares a table and fixes its key attributes'
    table = db.table(table_name, key_source=[{"id": 1}], make=lambda k, c: None)
    table.jobs.refresh()
    with pytest.raises(populus.InvalidArgumentError, match='^Watch: cursor "not-a-cursor" was not issued by this server$'):
        next(table.jobs.watch(cursor="not-a-cursor"))
    db.close()


def test_leases_are_renewed_through_a_make_longer_than_the_lease(server, table_name):
    seen: list[int] = []

    def make(key, ctx):
        # Three times the lease, half of it spinning in Python (holding the GIL between switches).
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            pass
        time.sleep(1.5)
        seen.append(ctx.attempt)
        assert not ctx.signal.aborted
        return {"attempt": ctx.attempt}

    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}], make=make)
    assert table.populate(reserve_jobs=True, lease_duration=1) == {"success_count": 1, "error_list": []}
    assert seen == [1]
    assert [r["result"] for r in table.fetch()] == [{"attempt": 1}]
    db.close()


def test_a_lost_lease_fires_ctx_signal_and_drops_the_result(server, table_name):
    db = populus.connect(url=server.url)
    admin = populus.connect(url=server.url)
    reasons: list[BaseException | None] = []

    def make(key, ctx):
        if key["id"] == 0:
            # Ignoring a reserved job takes its lease away; the next heartbeat hears it is lost.
            admin.table(table_name, key_source=[], make=make).jobs.ignore([key])
            fired = ctx.signal.wait(15)
            reasons.append(ctx.signal.reason if fired else None)
        return {"id": key["id"]}

    table = db.table(table_name, key_source=[{"id": 0}, {"id": 1}], make=make)
    assert table.populate(reserve_jobs=True, lease_duration=3) == {"success_count": 1, "error_list": []}
    [reason] = reasons
    assert isinstance(reason, populus.LeaseLostError)
    assert [r["key"] for r in table.fetch()] == [{"id": 1}]
    assert [j["key"] for j in table.jobs.ignored.fetch()] == [{"id": 0}]
    db.close()
    admin.close()
