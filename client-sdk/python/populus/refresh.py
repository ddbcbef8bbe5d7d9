"""Sending a key source to Refresh (promise 4), as the TypeScript SDK's
refresh.ts: the keys go in calls of at most 10,000 (the server's per-call
limit) that share one refresh_id, the last one marked final so that stale
removal sees every key. The key source is read once, streaming: at most two
batches are in memory (one held back until the next key shows whether it is
the last, one being filled). populate's refresh claims the table first
(claimed_refresh.py); its calls then carry the claim's id."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Union

from populus.errors import InvalidArgumentError, TableNotFoundError
from populus.keys import KEYS_PER_CALL, RefreshKeys
from populus.rpc import Connection
from populus.v1 import job_service_pb2
from populus.wire import duration

KeySource = Union[Iterable[Mapping[str, Any]], Callable[[], Iterable[Mapping[str, Any]]]]
"""The keys to compute: an iterable of key dicts, or a function answering one
(called again at every refresh, so it sees new upstream data)."""


@dataclass(frozen=True)
class RefreshParams:
    """Options of one refresh, all resolved (seconds)."""

    priority: int
    stale_timeout: float
    orphan_timeout: float | None
    delay: float


def keys_of(source: KeySource) -> Iterable[Mapping[str, Any]]:
    """The keys of a key source (calls it when it is a function); InvalidArgumentError for anything else."""
    keys = source() if callable(source) else source
    if isinstance(keys, (str, bytes, Mapping)) or not isinstance(keys, Iterable):
        raise InvalidArgumentError(
            f"key_source must be an iterable of key dicts, or a function returning one; got {type(keys).__name__}"
        )
    return keys


@dataclass(frozen=True)
class RefreshOutcome:
    """What a refresh did, and what the server said of the table after it."""

    counts: dict[str, int]
    """``{"added", "removed", "orphaned", "re_pended"}`` summed over the calls."""
    any_pending: bool | None
    """Whether the table has a pending job after the refresh (due or delayed):
    False means a populate has nothing to reserve. None when the server does
    not say (it predates the answer)."""


def refresh_key_source(connection: Connection, table: str, source: KeySource, params: RefreshParams) -> dict[str, int]:
    """Refreshes ``table`` with every key of ``source``; answers
    ``{"added", "removed", "orphaned", "re_pended"}`` summed over the calls. A
    table never refreshed and an empty key source answer all zeros."""
    return refresh_outcome(connection, table, source, params).counts


def refresh_outcome(connection: Connection, table: str, source: KeySource, params: RefreshParams, claim_id: str = "") -> RefreshOutcome:
    """refresh_key_source, answering the counts and whether a job is pending
    after it. ``claim_id``: the refresh claim it holds (claimed_refresh.py),
    which each call holds on and the final one ends.

    Calls go one at a time, so an answer's ``calls_at_once`` (how many calls
    the server's store writes side by side) is not needed here."""
    totals = {"added": 0, "removed": 0, "orphaned": 0, "re_pended": 0}
    any_pending: bool | None = None
    refresh_id = str(uuid.uuid4())
    sent_first = False

    def send(keys: RefreshKeys, final: bool) -> None:
        nonlocal sent_first, any_pending
        request = job_service_pb2.RefreshRequest(
            table=table,
            # A key source that fits in one call is a refresh of that call alone (no refresh id), which
            # spares the server the bookkeeping that ties several calls together.
            refresh_id="" if final and not sent_first else refresh_id,
            final=final,
            priority=params.priority,
            delay=duration(params.delay),
            stale_timeout=duration(params.stale_timeout),
            claim_id=claim_id,
            **keys.fields(),
        )
        if params.orphan_timeout is not None:
            request.orphan_timeout.CopyFrom(duration(params.orphan_timeout))
        sent_first = True
        answer = connection.call("Refresh", request)
        totals["added"] += answer.added
        totals["removed"] += answer.removed
        totals["orphaned"] += answer.orphaned
        totals["re_pended"] += answer.re_pended
        if final and answer.HasField("any_pending"):
            any_pending = answer.any_pending

    batch = RefreshKeys()
    full: RefreshKeys | None = None  # a full batch waits until we know whether it is the last
    for key in keys_of(source):
        batch.add(key)
        if len(batch) >= KEYS_PER_CALL:
            if full is not None:
                send(full, False)
            full, batch = batch, RefreshKeys()
    if full is not None and len(batch) > 0:
        send(full, False)
        last = batch
    else:
        last = full if full is not None else batch
    try:
        send(last, True)
    except TableNotFoundError:
        # An empty key source of a table never declared: nothing to refresh.
        if len(last) == 0 and full is None:
            return RefreshOutcome(totals, any_pending=False)
        raise
    return RefreshOutcome(totals, any_pending)
