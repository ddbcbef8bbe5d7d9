"""What the Python client's tests share: real populus-server processes (the
built server/dist/main.js, on port 0) on a fresh SQLite file and, when the
MariaDB/MySQL of the TypeScript tests answers, on a fresh MySQL database
``populus_test_py_<random>`` (dropped after the run); scripts run with
Debian's /usr/bin/python3 and the package on PYTHONPATH.

Dialects: POPULUS_TEST_DIALECTS (comma list, default both), as
test/helpers/databases.ts reads it. The MySQL family: POPULUS_TEST_MYSQL_URL
(mysql://user:pass@host:port) or 127.0.0.1:3306 as root; the database is
made and dropped with the `mysql` client. When none answers, the MySQL tests
are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO = PACKAGE_DIR.parents[1]
SERVER_MAIN = REPO / "server" / "dist" / "main.js"
WORKER_MAIN = REPO / "worker" / "dist" / "main.js"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

sys.path.insert(0, str(PACKAGE_DIR))
sys.path.insert(0, str(FIXTURES))


@dataclass
class Server:
    """A running populus-server."""

    process: subprocess.Popen
    port: int
    database: str
    logs: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int | None:
        """SIGTERM, then the exit code (SIGKILL after 15 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(database: str, *args: str) -> Server:
    """Starts a server on ``database`` and waits until it logs that it listens."""
    proc = subprocess.Popen(
        ["node", str(SERVER_MAIN), "--port", "0", "--database", database, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    logs: list[str] = []
    port: list[int] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            logs.append(line)
            if not port:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("msg") == "listening" and isinstance(entry.get("port"), int):
                    port.append(entry["port"])
                    ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60) or not port:
        proc.kill()
        raise RuntimeError(f"populus-server did not start on {database}: {proc.stderr.read() if proc.stderr else ''}")
    return Server(proc, port[0], database, logs)


def wanted_dialects() -> list[str]:
    raw = os.environ.get("POPULUS_TEST_DIALECTS", "").strip()
    if not raw:
        return ["sqlite", "mysql"]
    dialects = [d.strip() for d in raw.split(",")]
    for d in dialects:
        if d not in ("sqlite", "mysql"):
            raise pytest.UsageError(f'POPULUS_TEST_DIALECTS: unknown dialect "{d}"; use sqlite, mysql or both')
    return dialects


def _mysql_cli_args(url: str) -> list[str]:
    parts = urlsplit(url)
    args = ["mysql", "-h", parts.hostname or "127.0.0.1", "-P", str(parts.port or 3306), "-u", parts.username or "root"]
    if parts.password:
        args.append(f"-p{parts.password}")
    return args


def _mysql(url: str, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_mysql_cli_args(url), "-e", sql], capture_output=True, text=True, timeout=20)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="populus-py-test-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


_databases: list[str] = []
"""Which databases this run used, printed at its end (a skip says why instead)."""


def pytest_terminal_summary(terminalreporter) -> None:
    for line in dict.fromkeys(_databases):  # a server set up again (a test parametrized to one dialect) is named once
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", params=wanted_dialects())
def server(request: pytest.FixtureRequest, workdir: Path) -> Iterator[Server]:
    """One server per dialect for the whole run; tests use tables of their own."""
    dialect = request.param
    drop = None
    if dialect == "sqlite":
        database = f"sqlite:{workdir / 'populus.db'}"
        _databases.append(f"# SQLite tests: {workdir / 'populus.db'}")
    else:
        base = os.environ.get("POPULUS_TEST_MYSQL_URL", "").strip().rstrip("/") or "mysql://root@127.0.0.1:3306"
        if shutil.which("mysql") is None:
            pytest.skip(f"MySQL tests skipped: no `mysql` client to create a database on {base} (apt-get install mariadb-client)")
        ping = _mysql(base, "SELECT 1")
        if ping.returncode != 0:
            pytest.skip(f"MySQL tests skipped: {re.sub(r':[^:@/]*@', ':***@', base)} does not answer ({ping.stderr.strip()})")
        name = f"populus_test_py_{secrets.token_hex(6)}"
        made = _mysql(base, f"CREATE DATABASE `{name}`")
        assert made.returncode == 0, made.stderr
        database = f"{base}/{name}"
        drop = lambda: _mysql(base, f"DROP DATABASE IF EXISTS `{name}`")  # noqa: E731
        _databases.append(f"# MySQL tests: {re.sub(r':[^:@/]*@', ':***@', base)}, database {name} (dropped at the end)")
    s = start_server(database)
    try:
        yield s
    finally:
        code = s.stop()
        if drop is not None:
            drop()
        assert code == 0, f"populus-server on {dialect} exited {code} on SIGTERM"


@pytest.fixture
def table_name(request: pytest.FixtureRequest) -> str:
    """A table of this test alone, e.g. Populate_1a2b3c."""
    stem = re.sub(r"[^A-Za-z0-9]", "", request.node.originalname.removeprefix("test_").title())[:40]
    return f"{stem}_{secrets.token_hex(3)}"


@pytest.fixture
def calls_dir(workdir: Path, table_name: str) -> Path:
    """Where the fixtures' makes record their calls (POPULUS_TEST_CALLS_DIR)."""
    d = workdir / table_name
    d.mkdir()
    return d


def script_env(server: Server, calls_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_DIR), str(FIXTURES)]), "POPULUS_URL": server.url}
    env["POPULUS_TEST_CALLS_DIR"] = str(calls_dir)
    env.update(extra)
    return env


def run_script(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs /usr/bin/python3 with ``args``; fails the test with its output on a timeout. Every
    process that imports py_pipeline (the script and populate's children) prints its threads'
    stacks 5 s before the timeout, so a hang says where it hung."""
    env = {**env, "POPULUS_TEST_STACKS_AFTER": str(max(1.0, timeout - 5))}
    try:
        return subprocess.run([PYTHON, *args], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        output = [o.decode(errors="replace") if isinstance(o, bytes) else o for o in (err.stdout, err.stderr)]
        pytest.fail(f"{args} ran longer than {timeout} s.\nstdout:\n{output[0]}\nstderr:\n{output[1]}")


def wait_until(what: str, check, timeout: float = 40.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"waiting for {what}: timed out after {timeout} s")
        time.sleep(interval)


def metric(server: Server, name: str) -> float:
    """The value of an unlabelled gauge or counter of the server's GET /metrics
    (e.g. populus_refresh_claims_waiting: the ClaimRefresh long-polls waiting now)."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in the server's /metrics")
