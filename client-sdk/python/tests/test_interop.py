"""One table, two languages: the real populus-worker (TypeScript, node
worker/dist/main.js) and a Python populate(processes=2) populate the same
table through one server at the same time. Every key is made once, both
languages made some, and the progress and error views agree with what the
two recorded. Each side's first make waits until the other side has started
making too (fixtures' POPULUS_TEST_PEER_LANG), so "both made some" does not
depend on which one starts faster."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import populus
from calls import recorded
from conftest import FIXTURES, PYTHON, WORKER_MAIN, script_env

KEYS = 80
FAIL_EVERY = 10  # ids 3, 13, ..., 73 fail in both languages


def test_typescript_and_python_workers_share_one_table(server, table_name, calls_dir):
    common = dict(
        POPULUS_TEST_TABLE=table_name,
        POPULUS_TEST_KEYS=str(KEYS),
        POPULUS_TEST_FAIL_EVERY=str(FAIL_EVERY),
        POPULUS_TEST_SLEEP="0.02",
    )
    ts_env = script_env(server, calls_dir, POPULUS_TEST_PEER_LANG="py", **common)
    py_env = script_env(server, calls_dir, POPULUS_TEST_PEER_LANG="ts", **common)
    ts = subprocess.Popen(
        ["node", str(WORKER_MAIN), "--pipeline", str(FIXTURES / "ts_pipeline.mjs"), "--once", "--suppress-errors", "--log-level", "warn"],
        env=ts_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    py = subprocess.Popen(
        [PYTHON, str(FIXTURES / "run_populate.py"), json.dumps({"reserve_jobs": True, "processes": 2, "suppress_errors": True})],
        env=py_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ts_out, ts_err = ts.communicate(timeout=90)
        py_out, py_err = py.communicate(timeout=90)
    finally:
        for p in (ts, py):
            if p.poll() is None:
                p.kill()
    assert ts.returncode == 0, ts_err + ts_out
    assert py.returncode == 0, py_err

    calls = recorded(calls_dir, table_name)
    assert Counter(c["id"] for c in calls) == Counter(range(KEYS)), "every key made exactly once"
    by_lang = Counter(c["lang"] for c in calls)
    assert by_lang["ts"] > 0 and by_lang["py"] > 0, by_lang
    failing = {i for i in range(KEYS) if i % FAIL_EVERY == 3}

    # Python's answer counts what Python made.
    py_result = json.loads(py_out)
    py_made = {c["id"] for c in calls if c["lang"] == "py"}
    assert py_result["success_count"] == len(py_made - failing)
    assert sorted(k["id"] for k, _ in py_result["error_list"]) == sorted(py_made & failing)

    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[], make=lambda key, ctx: None)
    rows = table.fetch()
    assert sorted(r["key"]["id"] for r in rows) == sorted(set(range(KEYS)) - failing)
    ts_made = {c["id"] for c in calls if c["lang"] == "ts"}
    for r in rows:
        lang = "ts" if r["key"]["id"] in ts_made else "py"
        assert r["result"] == {"double": r["key"]["id"] * 2, "lang": lang, "attempt": 1}
    progress = table.jobs.progress()
    assert progress == {"pending": 0, "reserved": 0, "success": 0, "error": len(failing), "ignore": 0, "target": KEYS - len(failing), "remaining": 0}
    errors = table.jobs.errors.fetch()
    assert len(table.jobs.errors) == len(errors) == len(failing)
    for e in errors:
        i = e["key"]["id"]
        assert i in failing
        # Each language writes its own message and stack form.
        if i in ts_made:
            assert e["error_message"] == f"id {i} is bad" and "ts_pipeline.mjs" in e["error_stack"]
        else:
            assert e["error_message"] == f"ValueError: id {i} is bad" and "py_pipeline.py" in e["error_stack"]
    db.close()
