"""``python -m populus.worker``, the real entry point as a process: one pass
over a pipeline module's table with two processes, its JSON log lines, and
its exit codes for bad usage (2) and a module it cannot load (3);
``--refresh-interval`` (``POPULUS_REFRESH_INTERVAL``, default 30): a bad value
is bad usage, and a pass within the interval of the table's last refresh reads
no key source (a key added upstream is neither queued nor made) while
``--refresh-interval 0`` reads it and makes the key."""

from __future__ import annotations

import json
import time
from collections import Counter

import populus
import pytest
from calls import recorded
from conftest import FIXTURES, run_script, script_env


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
