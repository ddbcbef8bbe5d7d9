"""The heartbeat thread: renews the leases a reserve loop holds every third of
the lease length, with progress reports, and tells the loop which leases the
server answered as lost.

A plain ``threading.Thread`` suffices where the TypeScript SDK needs a worker
thread: a Python make that holds the GIL in pure-Python code is preempted
every few milliseconds (sys.getswitchinterval), and gRPC's C core releases
the GIL while a call is on the wire, so the thread gets its turn; only C code
that holds the GIL for longer than a third of a lease could starve it
(pass a longer ``lease_duration`` for such a make).
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from populus.errors import PopulusError
from populus.retry import RetryPolicy
from populus.rpc import Connection
from populus.v1 import job_service_pb2
from populus.wire import duration

HEARTBEAT_BATCH = 1000
"""Lease tokens per Heartbeat call (the server's limit)."""

_POLICY = RetryPolicy(max_attempts=5, initial_delay=0.2, max_delay=2.0)
_CALL_TIMEOUT_S = 10.0


class LeaseRenewer:
    """Renews held leases from a daemon thread until stopped."""

    def __init__(self, connection: Connection, table: str, lease_duration: float, on_lost: Callable[[list[str]], None]) -> None:
        # A connection of its own (see rpc.py), closed at stop().
        self._connection = Connection(connection.options)
        self._table = table
        self._lease_duration = lease_duration
        self._on_lost = on_lost
        self._lock = threading.Lock()
        # Held leases, with progress not yet sent.
        self._held: dict[str, tuple[float, str] | None] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"populus-heartbeat-{table}", daemon=True)
        self._thread.start()

    def hold(self, tokens: Iterable[str]) -> None:
        with self._lock:
            for t in tokens:
                self._held[t] = None

    def drop(self, tokens: Iterable[str]) -> None:
        with self._lock:
            for t in tokens:
                self._held.pop(t, None)

    def progress(self, token: str, fraction: float, message: str) -> None:
        """Progress of a held lease, sent with the next beat."""
        with self._lock:
            if token in self._held:
                self._held[token] = (fraction, message)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=_CALL_TIMEOUT_S * 2)
        self._connection.close()

    def _run(self) -> None:
        while not self._stopped.wait(self._lease_duration / 3):
            self._beat()

    def _beat(self) -> None:
        with self._lock:
            tokens = list(self._held)
        for i in range(0, len(tokens), HEARTBEAT_BATCH):
            batch = tokens[i : i + HEARTBEAT_BATCH]
            with self._lock:
                sent = {t: self._held[t] for t in batch if self._held.get(t) is not None}
            request = job_service_pb2.HeartbeatRequest(
                table=self._table,
                lease_tokens=batch,
                lease_duration=duration(self._lease_duration),
                progress=[job_service_pb2.LeaseProgress(lease_token=t, progress=p[0], message=p[1]) for t, p in sent.items() if p],
            )
            try:
                answer = self._connection.call("Heartbeat", request, timeout=_CALL_TIMEOUT_S, policy=_POLICY)
            except PopulusError:
                # The next beat tries again; a lease that expires meanwhile is answered as lost then
                # (or as LeaseLostError at Complete).
                continue
            with self._lock:
                # Progress is sent once; a newer report that arrived meanwhile goes with the next beat.
                for t, p in sent.items():
                    if self._held.get(t) is p:
                        self._held[t] = None
                # A lease the loop dropped while the call was in flight is no news to it.
                lost = [t for t in answer.lost_lease_tokens if self._held.pop(t, 0) != 0]
            if lost:
                self._on_lost(lost)
