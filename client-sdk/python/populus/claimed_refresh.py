"""populate's refresh, coordinated across every worker (promise 4), as the
TypeScript SDK's claimed-refresh.ts: before it reads the key source, populate
asks the server for the table's refresh claim (ClaimRefresh). Granted, it
refreshes, its calls carrying the claim, and the final call ends the claim;
held back (another refresh is running, or one finished less than
``refresh_interval`` ago), it reads no key source and goes straight to
reserving. So fifty looping workers read an expensive key source once, not
fifty times.

An explicit ``jobs.refresh()`` claims nothing and is never held back: its
caller asked for that refresh.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Literal

import grpc

from populus.errors import PopulusError
from populus.refresh import KeySource, RefreshParams, refresh_outcome
from populus.rpc import Connection
from populus.v1 import job_service_pb2
from populus.wire import duration


@dataclass(frozen=True)
class ClaimedRefreshOutcome:
    """What populate's refresh did: refreshed (``held_back`` None), or held back
    by another's, and then what the server said of the table."""

    held_back: Literal["running", "recent"] | None
    """None: this populate refreshed. "running": another refresh of the table
    holds the claim (in this process or anywhere). "recent": one finished less
    than the interval ago."""
    any_pending: bool | None
    """Whether the table has a pending job (False: nothing to reserve); None
    when unknown."""


class RefreshClaim:
    """A table's refresh claim in this process (one per Table object). Its id is
    the same on every populate, so that a process whose refresh failed with the
    server unreachable (the claim still held under its id) gets the claim back
    on its next pass instead of waiting out the claim's timeout; which is also
    why this process holds back its own second populate (another thread's)
    while its first one claims or refreshes."""

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        """The claim_id sent with ClaimRefresh and the claimed Refresh calls."""
        self._lock = threading.Lock()
        self._refreshing = False

    @property
    def refreshing(self) -> bool:
        """Whether a populate of this process is claiming or running the claimed refresh."""
        return self._refreshing

    def _begin(self) -> bool:
        with self._lock:
            if self._refreshing:
                return False
            self._refreshing = True
            return True

    def _end(self) -> None:
        with self._lock:
            self._refreshing = False


def claimed_refresh(
    connection: Connection, table: str, source: KeySource, params: RefreshParams, claim: RefreshClaim, refresh_interval: float
) -> ClaimedRefreshOutcome:
    """Refreshes ``table`` from ``source`` unless another refresh of it holds
    the claim or one finished within ``refresh_interval`` seconds."""
    # Taken before ClaimRefresh is sent: two threads of this process asking under the same id would
    # both be granted (a claim asked for again under its id is granted again).
    if not claim._begin():
        return ClaimedRefreshOutcome(held_back="running", any_pending=None)
    held = True
    try:
        try:
            answer = connection.call(
                "ClaimRefresh",
                job_service_pb2.ClaimRefreshRequest(table=table, claim_id=claim.id, min_interval=duration(refresh_interval)),
            )
        except PopulusError as err:
            if err.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
            # A server older than refresh claims: refresh as populate always did (another thread of
            # this process is not held back by it either).
            held = False
            claim._end()
            return ClaimedRefreshOutcome(held_back=None, any_pending=refresh_outcome(connection, table, source, params).any_pending)
        if not answer.granted:
            any_pending = answer.any_pending if answer.HasField("any_pending") else None
            return ClaimedRefreshOutcome(held_back="running" if answer.running else "recent", any_pending=any_pending)
        try:
            outcome = refresh_outcome(connection, table, source, params, claim.id)
        except BaseException:
            # Given back so that the next populate (this one's retry, or another worker's) may refresh
            # at once; if the server cannot be reached either, this process gets the claim back by its id.
            _abandon(connection, table, claim)
            raise
        return ClaimedRefreshOutcome(held_back=None, any_pending=outcome.any_pending)
    finally:
        if held:
            claim._end()


def _abandon(connection: Connection, table: str, claim: RefreshClaim) -> None:
    """AbandonRefresh, its failure ignored: a claim not given back lapses after
    its timeout, and this process's next populate is granted it by its id."""
    try:
        connection.call("AbandonRefresh", job_service_pb2.AbandonRefreshRequest(table=table, claim_id=claim.id))
    except Exception:  # noqa: BLE001 - best effort, see above
        pass
