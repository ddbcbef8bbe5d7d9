"""The reserve loop of one process, as the TypeScript SDK's reserve-loop.ts:
reserve a batch of jobs (in columns), run make on each in this thread, commit
the successes in one Complete (results as one JSON text), record failures
with Fail, and repeat until Reserve answers nothing, ``max_calls`` is
reached, or the loop is told to stop. Held leases are renewed by the
heartbeat thread (lease_renewer.py), so a long make keeps them.

The batch size follows the observed make time, so a batch is about
BATCH_TARGET_S of work: a no-op make grows it to 1000, a slow one keeps it at
one key. Unlike the TypeScript loop, the next batch is not reserved while
this one is made (one thread runs make; the round trip is small beside a
make worth distributing).

Outcomes per lease: make returned → committed (``success_count``) or, when
the lease was lost meanwhile, dropped (another worker has the key); make
raised → Fail (``error_list``), or dropped when the lease was lost; make
interrupted (KeyboardInterrupt) or never started because the loop stopped →
released, no attempt charged; still running when the stop's grace ended →
released at once, and its result dropped when it returns.
"""

from __future__ import annotations

import json
import math
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Mapping

from google.protobuf import struct_pb2

from populus.context import AbortSignal, MakeContext
from populus.errors import (
    InvalidArgumentError,
    LeaseLostError,
    PopulusError,
    ResourceExhaustedError,
    TableNotFoundError,
    UnavailableError,
    WorkerStoppingError,
)
from populus.graceful_stop import GracefulStop
from populus.keys import from_keys_json, from_proto_key, to_restriction
from populus.lease_renewer import LeaseRenewer
from populus.rpc import Connection
from populus.v1 import job_service_pb2, types_pb2
from populus.wire import duration

RESERVE_BATCH = 2
"""Jobs of the first Reserve, before any make time is known."""
MAX_RESERVE_BATCH = 1000
"""Largest batch: the server's limit for one Reserve and one Complete."""
BATCH_TARGET_S = 0.2
"""Work per batch the batch size aims at, seconds of make time."""
_BATCH_GROWTH = 8
LEASE_DURATION_S = 60.0
"""Default lease length, seconds; the heartbeat renews it every third of it."""
MAX_RESULT_JSON_BYTES = 4 * 1024 * 1024
"""The server's limit on one result, in bytes of its JSON."""
_COMPLETE_BATCH_BYTES = 15 * 1024 * 1024

Make = Callable[[dict, MakeContext], Any]


@dataclass
class LoopOptions:
    """Everything one reserve loop needs (populate.py fills it in)."""

    connection: Connection
    table: str
    make: Make
    identity: types_pb2.WorkerIdentity
    max_calls: int | None
    priority: int | None
    restriction: Mapping[str, Any] | None
    suppress_errors: bool
    keep_completed: bool
    lease_duration: float
    stop: GracefulStop
    on_failure: Callable[[dict, str], None] | None = None
    """Called once with the first failure when suppress_errors is False (a child tells its parent at once)."""
    on_make: Callable[[bool], None] | None = None
    """Called after each make with whether it succeeded (the progress display)."""


@dataclass
class LoopResult:
    """What one reserve loop did."""

    success_count: int = 0
    error_list: list[tuple[dict, str]] = field(default_factory=list)
    failure: tuple[dict, str] | None = None
    """The failure that stopped the loop (suppress_errors False)."""


@dataclass
class _Held:
    key: dict
    attempt: int
    signal: AbortSignal = field(default_factory=AbortSignal)
    lost: bool = False
    released: bool = False


def run_reserve_loop(o: LoopOptions) -> LoopResult:
    """Runs the loop to its end. Raises on an RPC error that is not about a
    lease; a KeyboardInterrupt (from make or the second SIGINT/SIGTERM)
    propagates after every held lease was released."""
    result = LoopResult()
    restriction = to_restriction(o.restriction)
    held: dict[str, _Held] = {}
    lock = threading.Lock()
    renewer: LeaseRenewer | None = None

    def mark_lost(tokens: list[str]) -> None:
        with lock:
            for token in tokens:
                h = held.get(token)
                if h is not None and not h.lost:
                    h.lost = True
                    h.signal._abort(LeaseLostError("the lease of this job was lost (expired and reassigned, or ignored)", [token]))

    def keeper() -> LeaseRenewer:
        nonlocal renewer
        if renewer is None:
            renewer = LeaseRenewer(o.connection, o.table, o.lease_duration, mark_lost)
        return renewer

    def forget(tokens: list[str]) -> None:
        with lock:
            for t in tokens:
                held.pop(t, None)
        if renewer is not None and tokens:
            renewer.drop(tokens)

    def release_held() -> None:
        """Gives back every held lease that is not lost (no attempt charged); called by the loop and at cancel."""
        with lock:
            tokens = [t for t, h in held.items() if not h.lost and not h.released]
            for t in tokens:
                held[t].released = True
        if renewer is not None and tokens:
            renewer.drop(tokens)
        for i in range(0, len(tokens), 1000):
            try:
                o.connection.call("Release", job_service_pb2.ReleaseRequest(table=o.table, lease_tokens=tokens[i : i + 1000]))
            except PopulusError:
                pass  # unreleased leases expire on their own and come back

    def on_cancel() -> None:
        with lock:
            for h in held.values():
                h.signal._abort(WorkerStoppingError("the worker is stopping: the grace period ended"))
        release_held()

    remove_on_cancel = o.stop.on_cancel(on_cancel)
    calls = 0
    want = RESERVE_BATCH
    sizer = _BatchSizer()
    try:
        # A short lease needs its renewals from the start: the thread is up before the first Reserve.
        if o.lease_duration < 30:
            keeper()
        while not o.stop.stopping.is_set():
            requested = want if o.max_calls is None else min(want, o.max_calls - calls)
            if requested <= 0:
                break
            leases, columns = _reserve(o, restriction, requested)
            if not leases:
                break
            with lock:
                for token, key, attempt in leases:
                    held[token] = _Held(key, attempt)
            keeper().hold(token for token, _, _ in leases)
            if o.stop.cancelled.is_set():
                on_cancel()
            completions: list[tuple[str, str]] = []
            started = time.monotonic()
            made = 0
            for token, key, attempt in leases:
                h = held.get(token)
                if h is None or h.lost or h.released or o.stop.stopping.is_set():
                    continue
                calls += 1
                made += 1
                ctx = MakeContext(key, attempt, h.signal, lambda f, m, t=token: keeper().progress(t, f, m))
                try:
                    completions.append((token, result_json(o.make(key, ctx))))
                    if o.on_make is not None:
                        o.on_make(True)
                except Exception as err:
                    if h.lost or h.released:
                        # Another worker holds the key now, or the stop released it: nothing to record.
                        forget([token])
                        continue
                    # DataJoint's form: the class, then the message when there is one.
                    message = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                    if _fail(o, token, message, traceback.format_exc()):
                        result.error_list.append((key, message))
                        if o.on_make is not None:
                            o.on_make(False)
                        if not o.suppress_errors and result.failure is None:
                            result.failure = (key, message)
                            if o.on_failure is not None:
                                o.on_failure(key, message)
                    forget([token])
                    if result.failure is not None:
                        break
            if made > 0:
                sizer.observe(time.monotonic() - started, made)
            want = sizer.next(want)
            with lock:
                ready = [(t, j) for t, j in completions if t in held and not held[t].lost and not held[t].released]
            try:
                result.success_count += _complete(o, ready, columns)
            finally:
                forget([t for t, _ in completions])
            if result.failure is not None:
                break
    finally:
        # Also on KeyboardInterrupt: what this process holds goes back without charging an attempt.
        release_held()
        forget(list(held))
        remove_on_cancel()
        if renewer is not None:
            renewer.stop()
    return result


class _BatchSizer:
    """The next batch size from the mean make time so far: about BATCH_TARGET_S
    of work, from 1 to MAX_RESERVE_BATCH, growing at most 8-fold per batch."""

    def __init__(self) -> None:
        self._makes = 0
        self._total = 0.0

    def observe(self, seconds: float, makes: int) -> None:
        self._makes += makes
        self._total += seconds

    def next(self, current: int) -> int:
        if self._makes == 0:
            return current
        mean = max(self._total / self._makes, 1e-6)
        ideal = max(1, min(MAX_RESERVE_BATCH, math.floor(BATCH_TARGET_S / mean)))
        return min(ideal, current * _BATCH_GROWTH)


def _reserve(o: LoopOptions, restriction: dict, want: int) -> tuple[list[tuple[str, dict, int]], bool]:
    """One Reserve asking for columns; (token, key, attempt) per job, and
    whether the answer came in columns (so Complete may send results so). A
    table never refreshed has nothing to do."""
    request = job_service_pb2.ReserveRequest(
        table=o.table,
        max_jobs=want,
        restriction=restriction,
        worker=o.identity,
        lease_duration=duration(o.lease_duration),
        as_columns=True,
        # One id for this Reserve and every retry of it (the connection resends this request): a
        # retry after an answer lost on the way back gets the jobs that answer leased, not more.
        request_id=str(uuid.uuid4()),
    )
    if o.priority is not None:
        request.max_priority = o.priority
    try:
        answer = o.connection.call("Reserve", request)
    except TableNotFoundError:
        return [], True
    if not answer.HasField("columns"):
        return [(lease.lease_token, from_proto_key(lease.key), lease.attempt) for lease in answer.leases], False
    c = answer.columns
    keys = from_keys_json(c.keys_json, c.key_attributes)
    if len(keys) != len(c.lease_tokens):
        raise InvalidArgumentError(f"the server sent {len(c.lease_tokens)} lease tokens but {len(keys)} keys")
    return list(zip(c.lease_tokens, keys, c.attempts)), True


def _json_default(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return v.item()
    raise TypeError(f"{type(v).__name__} {v!r} is not JSON-able")


def result_json(v: Any) -> str:
    """The result record of what make returned, as JSON text: a dict (dates
    become ISO strings, numpy scalars numbers); None means ``{}``. Anything
    else, NaN or infinity, or a record over the server's size limit, is an
    InvalidArgumentError, recorded as the job's failure."""
    if v is None:
        return "{}"
    if not isinstance(v, Mapping):
        raise InvalidArgumentError(f"make must return a dict (the result record) or None; it returned {type(v).__name__} {v!r:.80}")
    try:
        text = json.dumps(v, allow_nan=False, default=_json_default, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(f"make's result record is not JSON-able: {err}") from None
    size = len(text.encode("utf-8"))
    if size > MAX_RESULT_JSON_BYTES:
        raise InvalidArgumentError(
            f"make's result record is {size} bytes as JSON; the server takes at most {MAX_RESULT_JSON_BYTES} "
            "(store large data elsewhere and return a reference)"
        )
    return text


def _fail(o: LoopOptions, token: str, message: str, stack: str) -> bool:
    """Fail; False when the lease was already lost (nothing recorded)."""
    try:
        o.connection.call("Fail", job_service_pb2.FailRequest(table=o.table, lease_token=token, error_message=message, error_stack=stack))
        return True
    except LeaseLostError:
        return False


def _complete(o: LoopOptions, ready: list[tuple[str, str]], columns: bool) -> int:
    """Completes in calls the server accepts; on LeaseLostError drops the lost
    leases and commits the rest. A server that stays unreachable past the
    retries is waited for as long as the leases could still be current (one
    lease length): giving up would throw computed results away. Answers
    results committed (including ones an identical earlier call committed)."""
    until = time.monotonic() + o.lease_duration
    committed = 0
    for batch in _complete_batches(ready):
        while batch:
            request = job_service_pb2.CompleteRequest(table=o.table, keep_completed=o.keep_completed)
            if columns:
                request.lease_tokens.extend(t for t, _ in batch)
                request.results_json = "[" + ",".join(j for _, j in batch) + "]"
            else:
                for t, j in batch:
                    s = struct_pb2.Struct()
                    s.update(json.loads(j))
                    request.completions.add(lease_token=t, result=s)
            try:
                answer = o.connection.call("Complete", request)
                committed += answer.committed + answer.already_committed
                break
            except (UnavailableError, ResourceExhaustedError):
                if time.monotonic() >= until:
                    raise
                time.sleep(1)
            except LeaseLostError as err:
                lost = set(err.lease_tokens)
                if not lost:
                    # Without a detail we cannot tell which lease was lost: commit one at a time.
                    if len(batch) > 1:
                        committed += sum(_complete(o, [one], columns) for one in batch)
                    break
                batch = [c for c in batch if c[0] not in lost]
    return committed


def _complete_batches(ready: list[tuple[str, str]]):
    """At most 1000 results and 15 MiB of JSON per Complete (the server takes 16 MiB)."""
    batch: list[tuple[str, str]] = []
    size = 0
    for c in ready:
        n = len(c[1].encode("utf-8")) + 128
        if batch and (len(batch) == MAX_RESERVE_BATCH or size + n > _COMPLETE_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(c)
        size += n
    if batch:
        yield batch
