"""``python -m populus.worker``, the real entry point as a process: one pass
over a pipeline module's table with two processes, its JSON log lines, and
its exit codes for bad usage (2) and a module it cannot load (3)."""

from __future__ import annotations

import json
from collections import Counter

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
