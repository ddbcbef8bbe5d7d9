"""Workers that die or are told to stop, as real processes:

- a Python worker SIGKILLed mid-make: its jobs come back when their short
  leases expire, a second worker makes them, and every key commits once (a
  key made twice commits the second lease's result only);
- SIGTERM with grace 0: the running make's ctx.signal fires, every held
  lease is released without charging an attempt, and populate returns (exit 0);
- SIGTERM with a grace: the running make finishes and commits, nothing more
  is reserved, the rest goes back without charging an attempt.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter

import populus
from calls import recorded
from conftest import FIXTURES, PYTHON, run_script, script_env, wait_until


def start_populate(env: dict, options: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, str(FIXTURES / "run_populate.py"), json.dumps(options)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def hanging(calls_dir, table_name) -> bool:
    return any("hang" in c for c in recorded(calls_dir, table_name))


def test_sigkilled_worker_jobs_come_back_and_commit_once(server, table_name, calls_dir):
    keys = 20
    env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name, POPULUS_TEST_KEYS=str(keys), POPULUS_TEST_HANG_ID="9")
    worker = start_populate(env, {"reserve_jobs": True, "lease_duration": 2})
    try:
        wait_until("the make of id 9 to start", lambda: hanging(calls_dir, table_name) or worker.poll() is not None)
        assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        worker.kill()
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[], make=lambda key, ctx: None)
    held = table.jobs.reserved.fetch()
    held_ids = {j["key"]["id"] for j in held}
    assert 9 in held_ids
    assert all(j["attempts"] == 1 for j in held)
    committed_before = table.jobs.progress()["target"]
    # The leases expire (2 s, the server sweeps every second): the jobs are pending again.
    wait_until("the dead worker's jobs to come back", lambda: len(table.jobs.reserved) == 0, timeout=30)
    rest = run_script([str(FIXTURES / "run_populate.py"), json.dumps({"reserve_jobs": True})], {**env, "POPULUS_TEST_HANG_ID": "-1"})
    assert rest.returncode == 0, rest.stderr
    assert json.loads(rest.stdout)["success_count"] == keys - committed_before
    rows = table.fetch()
    assert sorted(r["key"]["id"] for r in rows) == list(range(keys))
    made = Counter(c["id"] for c in recorded(calls_dir, table_name) if "id" in c)
    assert set(made) == set(range(keys))
    # Only keys the dead worker held were made again, and each at most twice.
    assert {i for i, n in made.items() if n > 1} <= held_ids and max(made.values()) == 2 and made[9] == 2
    for r in rows:
        # A key the dead worker held committed the second lease's result, the others their first.
        assert r["result"]["attempt"] == (2 if r["key"]["id"] in held_ids else 1)
    assert table.jobs.progress()["remaining"] == 0
    db.close()


def test_sigterm_with_no_grace_releases_without_charging_an_attempt(server, table_name, calls_dir):
    env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name, POPULUS_TEST_KEYS="6", POPULUS_TEST_HANG_ID="0")
    worker = start_populate(env, {"reserve_jobs": True, "grace": 0})
    try:
        wait_until("the make of id 0 to start", lambda: hanging(calls_dir, table_name) or worker.poll() is not None)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert json.loads(out) == {"success_count": 0, "error_list": []}
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[], make=lambda key, ctx: None)
    pending = table.jobs.pending.fetch()
    assert sorted(j["key"]["id"] for j in pending) == list(range(6))
    assert [j["attempts"] for j in pending] == [0] * 6, "Release gives the attempt back"
    assert len(table.jobs.errors) == 0 and table.jobs.progress()["target"] == 0
    db.close()


def test_sigterm_lets_the_running_make_commit_within_the_grace(server, table_name, calls_dir):
    env = script_env(server, calls_dir, POPULUS_TEST_TABLE=table_name, POPULUS_TEST_KEYS="4", POPULUS_TEST_SLEEP="1")
    worker = start_populate(env, {"reserve_jobs": True, "grace": 30})
    try:
        wait_until("the first make to start", lambda: len(recorded(calls_dir, table_name)) > 0 or worker.poll() is not None)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    # The make running at SIGTERM finished and committed (on a loaded machine one more may have
    # started before the signal landed); nothing started after it.
    made = sorted(c["id"] for c in recorded(calls_dir, table_name))
    assert json.loads(out) == {"success_count": len(made), "error_list": []}
    assert 1 <= len(made) < 4
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[], make=lambda key, ctx: None)
    assert sorted(r["key"]["id"] for r in table.fetch()) == made
    pending = table.jobs.pending.fetch()
    assert sorted(j["key"]["id"] for j in pending) == sorted(set(range(4)) - set(made))
    assert all(j["attempts"] == 0 for j in pending)
    db.close()
