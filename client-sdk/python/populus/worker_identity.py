"""Who holds a lease: host, pid, OS user, a worker id unique in the cluster
(host:pid:random) and the code version chosen by ``config.jobs.version_method``."""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import subprocess

from populus.errors import InvalidConfigError
from populus.v1 import types_pb2


def code_version(method: str | None) -> str:
    """"" for None; for "git" the short commit hash of the working directory's
    repository (InvalidConfigError when git cannot answer, so a misconfigured
    node fails before it reserves anything)."""
    if method is None:
        return ""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        raise InvalidConfigError(f'config.jobs.version_method is "git" but `git rev-parse --short HEAD` failed in {os.getcwd()}: {detail.strip()}') from None
    return out.stdout.strip()


def worker_identity(version_method: str | None) -> types_pb2.WorkerIdentity:
    """A fresh identity for this process."""
    host = socket.gethostname()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""  # a uid without a passwd entry (some containers)
    pid = os.getpid()
    return types_pb2.WorkerIdentity(
        worker_id=f"{host}:{pid}:{secrets.token_hex(4)}",
        host=host,
        pid=pid,
        user=user,
        code_version=code_version(version_method),
    )
