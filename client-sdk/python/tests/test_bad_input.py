"""Bad input gets a clear, typed error and changes nothing: options checked
by the client before any call, keys it cannot send, and requests the server
refuses (its INVALID_ARGUMENT and NOT_FOUND become InvalidArgumentError and
TableNotFoundError with the server's message)."""

from __future__ import annotations

import populus
import pytest
from conftest import run_script, script_env

# Checks the client makes before any call: one server (SQLite) is enough.
client_side = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


@client_side
def test_connect_and_table_options(server):
    with pytest.raises(populus.InvalidConfigError, match='^url: "ftp://h:1" must start with http:// or https://'):
        populus.connect(url="ftp://h:1")
    with pytest.raises(populus.InvalidConfigError, match="has a path; the Python client speaks gRPC"):
        populus.connect(url="http://h:1/prefix")
    with pytest.raises(populus.InvalidConfigError, match='^ca_file: cannot read "/nonexistent.pem"'):
        populus.connect(url="https://h:1", ca_file="/nonexistent.pem")
    db = populus.connect(url=server.url)
    with pytest.raises(populus.InvalidArgumentError, match='^table name "no way": use letters, digits and underscores'):
        db.table("no way", key_source=[], make=lambda k, c: None)
    with pytest.raises(populus.InvalidArgumentError, match="make must be a function"):
        db.table("Fine", key_source=[], make=None)  # type: ignore[arg-type]


@client_side
def test_populate_and_refresh_options_change_nothing(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}], make=lambda k, c: {})
    cases = [
        (dict(processes=0), f"{table_name}.populate: processes must be an integer >= 1, got 0"),
        (dict(max_calls=-1), f"{table_name}.populate: max_calls must be an integer >= 0 or None, got -1"),
        (dict(priority=256), f"{table_name}.populate: priority must be an integer from 0 to 255 or None, got 256"),
        (dict(lease_duration=0.5), f"{table_name}.populate: lease_duration must be from 1 to 86400 seconds, got 0.5"),
        (dict(grace=-1), f"{table_name}.populate: grace must be from 0 to 86400 seconds, got -1"),
        (dict(restriction={"id": None}), 'key attribute "id": None is not a key value; use an int, float, str or bool'),
    ]
    for options, message in cases:
        with pytest.raises(populus.InvalidArgumentError) as raised:
            table.populate(reserve_jobs=True, **options)
        assert str(raised.value) == message
    with pytest.raises(populus.InvalidArgumentError, match=r"^jobs.refresh: priority must be an integer from 0 to 255, got 300$"):
        table.jobs.refresh(priority=300)
    with pytest.raises(populus.InvalidArgumentError, match=r"^jobs.refresh: delay must be a number of seconds >= 0, got -1$"):
        table.jobs.refresh(delay=-1)
    # Nothing reached the server: the table was never declared.
    with pytest.raises(populus.TableNotFoundError):
        table.jobs.progress()


@client_side
def test_keys_the_client_cannot_send(server, table_name):
    db = populus.connect(url=server.url)
    bad_keys = [
        ([{"id": 1}, {"id": None}], 'key attribute "id": None is not a key value; use an int, float, str or bool'),
        ([{"id": float("nan")}], 'key attribute "id": nan is not a finite number'),
        ([{"id": 2**63}], f'key attribute "id": {2**63} does not fit in int64'),
        ([{"id": "\ud800"}], 'key attribute "id": the string has a lone surrogate (no UTF-8 form)'),
        ([{}], "a key must have at least one attribute, e.g. {'id': 3}"),
        ([3], "a key must be a dict of attribute values, e.g. {'id': 3}; got int 3"),
    ]
    for keys, message in bad_keys:
        table = db.table(table_name, key_source=keys, make=lambda k, c: {})
        with pytest.raises(populus.InvalidArgumentError) as raised:
            table.jobs.refresh()
        assert str(raised.value) == message
    with pytest.raises(populus.InvalidArgumentError, match="^key_source must be an iterable of key dicts"):
        db.table(table_name, key_source=lambda: 42, make=lambda k, c: {}).jobs.refresh()
    with pytest.raises(populus.TableNotFoundError):
        db.table(table_name, key_source=[], make=lambda k, c: {}).jobs.progress()


def test_requests_the_server_refuses_change_nothing(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}, {"id": 2}], make=lambda k, c: {})
    assert table.jobs.refresh()["added"] == 2
    before = table.jobs.progress()
    other_type = db.table(table_name, key_source=[{"id": "x"}], make=lambda k, c: {})
    with pytest.raises(populus.InvalidArgumentError) as raised:
        other_type.jobs.refresh()
    assert str(raised.value) == "Refresh: key_attributes { id: string } do not match the table's key attributes { id: int64 }"
    with pytest.raises(populus.InvalidArgumentError) as raised:
        table.populate(reserve_jobs=True, restriction={"nope": 1})
    assert str(raised.value) == 'Reserve restriction: restriction names "nope", which is not a key attribute of { id: int64 }'
    assert table.jobs.progress() == before
    assert isinstance(raised.value.__cause__, Exception)  # the grpc.RpcError, kept


def test_a_result_that_is_no_record_is_recorded_as_the_jobs_failure(server, table_name):
    db = populus.connect(url=server.url)
    results = {1: [1, 2], 2: {"x": float("nan")}, 3: {"when": object()}, 4: None}
    table = db.table(table_name, key_source=[{"id": i} for i in results], make=lambda k, c: results[k["id"]])
    result = table.populate(reserve_jobs=True, suppress_errors=True)
    assert result["success_count"] == 1
    messages = dict((k["id"], m) for k, m in result["error_list"])
    assert messages[1] == "InvalidArgumentError: make must return a dict (the result record) or None; it returned list [1, 2]"
    assert messages[2] == "InvalidArgumentError: make's result record is not JSON-able: Out of range float values are not JSON compliant"
    assert messages[3].startswith("InvalidArgumentError: make's result record is not JSON-able: object <object object at")
    assert [(r["key"], r["result"]) for r in table.fetch()] == [({"id": 4}, {})]
    assert len(table.jobs.errors) == 3


@client_side
def test_make_that_child_processes_cannot_import(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}], make=lambda k, c: {})
    with pytest.raises(populus.WorkerProcessError, match=r"processes=2\): make cannot be sent to a child process .*define make as a module-level function"):
        table.populate(reserve_jobs=True, processes=2)
    assert len(table.jobs.pending) == 1


@client_side
def test_config_jobs(server, calls_dir):
    jobs = populus.config.jobs
    before = jobs.snapshot()
    with pytest.raises(populus.InvalidConfigError, match=r"^config.jobs.default_priority must be an integer from 0 \(most urgent\) to 255, got 300$"):
        jobs.default_priority = 300
    with pytest.raises(populus.InvalidConfigError, match="^config.jobs has no setting 'keep_complete'"):
        jobs.keep_complete = True
    with pytest.raises(populus.InvalidConfigError):
        jobs.set(keep_completed=True, stale_timeout=-1)
    assert jobs.snapshot() == before
    # From the environment, read at the first use of config.jobs, as the TypeScript SDK reads the same variables.
    code = "import populus; print(populus.config.jobs.snapshot())"
    env = script_env(server, calls_dir, POPULUS_KEEP_COMPLETED="yes", POPULUS_DEFAULT_PRIORITY="2", POPULUS_STALE_TIMEOUT="60", POPULUS_AUTO_REFRESH="0")
    out = run_script(["-c", code], env)
    assert out.stdout.strip() == "{'auto_refresh': False, 'refresh_interval': 0, 'keep_completed': True, 'stale_timeout': 60, 'default_priority': 2, 'version_method': None}"
    out = run_script(["-c", code], {**env, "POPULUS_DEFAULT_PRIORITY": "urgent"})
    assert out.returncode == 1
    assert out.stderr.strip().endswith('populus.errors.InvalidConfigError: POPULUS_DEFAULT_PRIORITY must be a number, got "urgent"')
    # The import itself does not fail; each use raises until the variable is fixed.
    code = (
        "import os, populus\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        populus.config.jobs\n"
        "    except populus.InvalidConfigError as err:\n"
        "        print(err)\n"
        "os.environ['POPULUS_DEFAULT_PRIORITY'] = '7'\n"
        "print(populus.config.jobs.default_priority)"
    )
    out = run_script(["-c", code], {**env, "POPULUS_DEFAULT_PRIORITY": "urgent"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['POPULUS_DEFAULT_PRIORITY must be a number, got "urgent"'] * 2 + ["7"]


def test_keep_completed_fills_the_completed_view(server, table_name):
    db = populus.connect(url=server.url)
    table = db.table(table_name, key_source=[{"id": 1}, {"id": 2}], make=lambda k, c: {"ok": True})
    populus.config.jobs.keep_completed = True
    try:
        assert table.populate(reserve_jobs=True)["success_count"] == 2
    finally:
        populus.config.jobs.keep_completed = False
    done = table.jobs.completed.fetch()
    assert sorted(j["key"]["id"] for j in done) == [1, 2] and all(j["status"] == "success" and j["duration"] is not None for j in done)
    assert len(table.jobs.completed) == 2
    assert table.jobs.completed.delete() == 2
