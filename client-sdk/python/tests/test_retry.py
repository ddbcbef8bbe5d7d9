"""Retries, with a server of the test's own on SQLite: a call made while the
server restarts is retried until the server is back and answers; a server
that stays unreachable surfaces as UnavailableError once the retries are
spent."""

from __future__ import annotations

import socket
import threading
import time

import populus
from conftest import start_server
from populus.v1 import job_service_pb2


def test_a_call_outlasts_a_server_restart(workdir, table_name):
    database = f"sqlite:{workdir / (table_name + '.db')}"
    # A short drain: the client keeps its connection open, which the server would wait 10 s for.
    first = start_server(database, "--shutdown-grace", "1")
    db = populus.connect(url=first.url)
    table = db.table(table_name, key_source=[{"id": 1}, {"id": 2}], make=lambda k, c: {})
    assert table.jobs.refresh()["added"] == 2
    assert first.stop() == 0
    servers = []
    restart = threading.Thread(target=lambda: (time.sleep(1.5), servers.append(start_server(database, "--port", str(first.port)))))
    restart.start()
    try:
        started = time.monotonic()
        # Sent while no server listens: UNAVAILABLE, retried with backoff until the new server answers.
        assert table.jobs.progress()["pending"] == 2
        assert time.monotonic() - started >= 1.0
    finally:
        restart.join()
        db.close()
        for s in servers:
            assert s.stop() == 0


def test_an_unreachable_server_is_unavailable_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once the socket closes: nothing listens there
    db = populus.connect(url=f"http://127.0.0.1:{port}")
    request = job_service_pb2.GetProgressRequest(table="Anything")
    try:
        db.connection.call("GetProgress", request, policy=populus.RetryPolicy(max_attempts=3, initial_delay=0.05))
    except populus.UnavailableError as err:
        assert err.code.name == "UNAVAILABLE"
        assert err.__cause__ is not None
    else:
        raise AssertionError("a call to a port nothing listens on succeeded")
    finally:
        db.close()
