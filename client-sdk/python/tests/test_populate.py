"""populate against real servers on each dialect: every key made once with
processes=2 (real OS processes) and reserve_jobs, direct mode with
max_calls, results read back, and failures recorded as error jobs with
message and stack (suppress_errors on and off)."""

from __future__ import annotations

import json
from collections import Counter

import populus
import pytest
from calls import recorded
from conftest import FIXTURES, run_script, script_env


def test_reserve_jobs_with_two_processes_makes_every_key_once(server, table_name, calls_dir):
    env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name, POPULUS_TEST_KEYS="60", POPULUS_TEST_SLEEP="0.01")
    out = run_script([str(FIXTURES / "run_populate.py"), json.dumps({"reserve_jobs": True, "processes": 2})], env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"success_count": 60, "error_list": []}
    calls = recorded(calls_dir, table_name)
    assert Counter(c["id"] for c in calls) == Counter(range(60))
    # Two child processes, neither of them the script itself.
    assert len({c["pid"] for c in calls}) <= 2

    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[], make=lambda key, ctx: None)
    rows = table.fetch()
    assert sorted(r["key"]["id"] for r in rows) == list(range(60))
    assert all(r["result"] == {"double": r["key"]["id"] * 2, "lang": "py", "attempt": 1} for r in rows)
    assert table.jobs.progress() == {"pending": 0, "reserved": 0, "success": 0, "error": 0, "ignore": 0, "target": 60, "remaining": 0}
    # A second populate finds nothing to do and starts no process.
    out = run_script([str(FIXTURES / "run_populate.py"), json.dumps({"reserve_jobs": True, "processes": 2})], env)
    assert json.loads(out.stdout) == {"success_count": 0, "error_list": []}
    assert len(recorded(calls_dir, table_name)) == 60
    db.close()


def test_direct_mode_with_max_calls(server, table_name):
    made: list[dict] = []

    def make(key, ctx):
        made.append(key)
        return {"sum": key["subject"] + key["session"], "when": ctx.attempt}

    db = populus.connect(url=server.url)
    keys = [{"subject": s, "session": t} for s in range(3) for t in range(4)]
    table = db.table(table_name, key_source=lambda: iter(keys), make=make)
    assert table.populate(max_calls=5) == {"success_count": 5, "error_list": []}
    assert len(made) == 5
    assert table.populate() == {"success_count": 7, "error_list": []}
    assert sorted((k["subject"], k["session"]) for k in made) == sorted((k["subject"], k["session"]) for k in keys)
    rows = table.fetch(restriction={"subject": 2})
    assert sorted((r["key"]["session"], r["result"]["sum"]) for r in rows) == [(t, 2 + t) for t in range(4)]
    # Deleting computed rows queues their keys again at the next refresh.
    assert table.delete([{"subject": 0, "session": 0}, {"subject": 0, "session": 1}]) == 2
    assert table.populate(reserve_jobs=True) == {"success_count": 2, "error_list": []}
    assert table.delete(all=True) == 12
    db.close()


def test_suppress_errors_collects_failures_and_the_errors_view_shows_them(server, table_name):
    def make(key, ctx):
        if key["id"] % 4 == 1:
            raise ValueError(f"id {key['id']} is odd in a bad way")
        return {"id": key["id"]}

    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": i} for i in range(12)], make=make)
    result = table.populate(reserve_jobs=True, suppress_errors=True)
    assert result["success_count"] == 9
    assert sorted(result["error_list"], key=lambda e: e[0]["id"]) == [
        ({"id": i}, f"ValueError: id {i} is odd in a bad way") for i in (1, 5, 9)
    ]
    assert len(table.jobs.errors) == 3
    errors = table.jobs.errors.fetch()
    assert sorted(e["key"]["id"] for e in errors) == [1, 5, 9]
    for e in errors:
        assert e["status"] == "error"
        assert e["error_message"] == f"ValueError: id {e['key']['id']} is odd in a bad way"
        assert "Traceback (most recent call last)" in e["error_stack"]
        assert 'raise ValueError(f"id' in e["error_stack"]
        assert e["attempts"] == 1 and e["pid"] > 0 and e["host"] != ""
    assert table.jobs.progress()["error"] == 3
    # An error job is not queued again until it is deleted.
    assert table.populate(reserve_jobs=True, suppress_errors=True) == {"success_count": 0, "error_list": []}
    assert table.jobs.errors.delete([{"id": 1}]) == 1
    assert table.jobs.refresh() == {"added": 1, "removed": 0, "orphaned": 0, "re_pended": 0}
    assert len(table.jobs.pending) == 1
    assert table.jobs.errors.delete() == 2
    assert len(table.jobs.errors) == 0
    db.close()


def test_first_failure_raises_make_error_after_recording_it(server, table_name):
    calls: list[int] = []

    def make(key, ctx):
        calls.append(key["id"])
        if key["id"] == 2:
            raise RuntimeError("two")
        return {}

    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": i} for i in range(6)], make=make)
    table.jobs.refresh(priority=7)
    # Make key 2 the first job reserved: priority 0 goes first.
    table.jobs.pending.delete([{"id": 2}])
    table.jobs.refresh(priority=0)
    with pytest.raises(populus.MakeError) as raised:
        table.populate(reserve_jobs=True, refresh=False)
    assert raised.value.key == {"id": 2}
    assert str(raised.value) == "RuntimeError: two"
    assert calls[0] == 2
    [job] = table.jobs.errors.fetch()
    assert job["key"] == {"id": 2} and job["error_message"] == "RuntimeError: two" and job["priority"] == 0
    # Nothing stays reserved: what the loop held and did not make went back.
    assert len(table.jobs.reserved) == 0
    assert table.jobs.progress()["target"] + len(table.jobs.pending) == 5
    db.close()


def test_errors_in_child_processes_with_suppress_errors(server, table_name, calls_dir):
    env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name, POPULUS_TEST_KEYS="20", POPULUS_TEST_FAIL_EVERY="5")
    out = run_script([str(FIXTURES / "run_populate.py"), json.dumps({"reserve_jobs": True, "processes": 2, "suppress_errors": True})], env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["success_count"] == 16
    assert sorted(result["error_list"], key=lambda e: e[0]["id"]) == [[{"id": i}, f"ValueError: id {i} is bad"] for i in (3, 8, 13, 18)]
    # Without suppress_errors the first failure ends populate with exit 1 (MakeError).
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[], make=lambda key, ctx: None)
    assert table.jobs.errors.delete() == 4
    out = run_script([str(FIXTURES / "run_populate.py"), json.dumps({"reserve_jobs": True, "processes": 2})], env)
    assert out.returncode == 1
    assert out.stderr.startswith("populate failed: MakeError: ValueError: id ")
    assert len(table.jobs.reserved) == 0
    db.close()
