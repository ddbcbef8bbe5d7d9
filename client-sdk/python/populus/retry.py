"""Retries of calls that are safe to repeat, as the TypeScript SDK's retry.ts.

UNAVAILABLE (server or database unreachable), RESOURCE_EXHAUSTED (server
overloaded), ABORTED (a deadlock the server gave up on, or a connection reset
mid-call) and a CANCELLED we did not ask for are retried: every other code
means the request itself is wrong or the lease is gone, and repeating it
would fail the same way. Every JobService RPC the SDK sends is safe to
repeat: Complete and Fail answer OK for a repeat of a call that committed
(promise 2), Refresh is a set operation (promise 4), and a repeated Reserve
at worst leases jobs whose leases then expire.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import grpc

from .graceful_stop import wait_in_slices

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How calls are retried."""

    max_attempts: int = 8
    """Tries in all, the first included."""
    initial_delay: float = 0.1
    """Delay before the first retry, seconds."""
    max_delay: float = 5.0
    """Longest delay between two tries, seconds."""


DEFAULT_RETRY = RetryPolicy()
"""8 tries, 0.1 s doubling to at most 5 s, each delay jittered to [d/2, d]:
at most about 12 s of waiting before the error surfaces, which outlasts a
server restart on the embedded SQLite."""

RETRYABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED}
)


def is_retryable(code: grpc.StatusCode | None) -> bool:
    """True for the codes that are retried."""
    return code in RETRYABLE_CODES


def jittered(delay: float) -> float:
    """``delay`` jittered to a random value in [delay/2, delay], so that clients
    cut off together do not come back together."""
    return delay / 2 + random.random() * (delay / 2)


def with_retry(
    call: Callable[[], T],
    policy: RetryPolicy = DEFAULT_RETRY,
    stop: threading.Event | None = None,
    on_retry: Callable[[grpc.RpcError], None] | None = None,
) -> T:
    """Runs ``call`` and retries it on a retryable grpc.RpcError with jittered
    exponential backoff; the last error is raised as it was. ``stop`` set ends
    the waiting early (the last error is raised); ``on_retry`` hears each
    error that is retried."""
    delay = policy.initial_delay
    attempt = 1
    while True:
        try:
            return call()
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            if not is_retryable(code) or attempt >= policy.max_attempts:
                raise
            if stop is not None and stop.is_set():
                raise
            if on_retry is not None:
                on_retry(err)
        pause = jittered(delay)
        if stop is not None:
            wait_in_slices(stop, pause)  # a SIGTERM given to one of gRPC's threads ends it too
        else:
            time.sleep(pause)
        delay = min(delay * 2, policy.max_delay)
        attempt += 1
