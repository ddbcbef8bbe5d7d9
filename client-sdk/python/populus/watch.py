"""``table.jobs.watch()``: the server's Watch stream (promise 5) as an
iterator of plain dicts, as the TypeScript SDK's watch.ts.

A stream cut by the network or a server going away (UNAVAILABLE,
RESOURCE_EXHAUSTED, ABORTED, a CANCELLED we did not ask for, or a stream
that simply ends: the server ends it only when it shuts down) is reopened
after a backoff of ``retry`` (after ``max_attempts`` failed tries in a row the
last error is raised), passing the last cursor seen, so the caller gets
every event once and in commit order across reconnects. Every other error is
raised as the SDK's typed error: TableNotFoundError (unknown table),
InvalidArgumentError (a cursor the server did not issue), CursorExpiredError
(a cursor whose events were pruned)."""

from __future__ import annotations

import threading
from typing import Any, Iterator

import grpc

from populus.errors import from_rpc_error
from populus.keys import from_keys_json, from_proto_key
from populus.retry import RetryPolicy, is_retryable, jittered
from populus.rpc import Connection
from populus.v1 import job_service_pb2, types_pb2
from populus.wire import datetime_of

_EVENT_STATUS = {
    types_pb2.JOB_STATUS_UNSPECIFIED: "deleted",
    types_pb2.JOB_STATUS_PENDING: "pending",
    types_pb2.JOB_STATUS_RESERVED: "reserved",
    types_pb2.JOB_STATUS_SUCCESS: "success",
    types_pb2.JOB_STATUS_ERROR: "error",
    types_pb2.JOB_STATUS_IGNORE: "ignore",
}

_COUNTS = ("pending", "reserved", "success", "error", "ignore", "target", "remaining")


def progress_counts(p: types_pb2.Progress) -> dict[str, int]:
    """A proto Progress as a dict of counts."""
    return {name: getattr(p, name) for name in _COUNTS}


def _event(e: job_service_pb2.JobEvent) -> dict[str, Any]:
    return {
        "key": from_proto_key(e.key),
        # A status this SDK does not know yet (a newer server) reads as the row being gone.
        "status": _EVENT_STATUS.get(e.status, "deleted"),
        "time": datetime_of(e, "time"),
        "worker_id": e.worker_id,
        "committed": e.committed,
        "error_message": e.error_message,
    }


def _events(message: job_service_pb2.WatchResponse) -> list[dict[str, Any]]:
    """A message's job events. Asked for in groups (grouped_events): per group one
    json.loads of its keys and a few shared fields, instead of a JobEvent message
    with a map of Value messages per event; a server that predates groups answers
    JobEvent messages, which are taken too."""
    if not message.event_groups:
        return [_event(e) for e in message.events]
    events = []
    for g in message.event_groups:
        status = _EVENT_STATUS.get(g.status, "deleted")
        time = datetime_of(g, "time")
        for i, key in enumerate(from_keys_json(g.keys_json, message.key_attributes)):
            events.append(
                {
                    "key": key,
                    "status": status,
                    "time": time,
                    "worker_id": g.worker_id,
                    "committed": g.committed,
                    "error_message": g.error_messages[i] if i < len(g.error_messages) else "",
                }
            )
    return events


class Watch:
    """An iterator of Watch updates; ``close()`` ends the stream (also from another thread)."""

    def __init__(self, connection: Connection, table: str, cursor: str, counts_only: bool, retry: RetryPolicy) -> None:
        self._connection = connection
        self._table = table
        self._counts_only = counts_only
        self._policy = retry
        self._closed = threading.Event()
        self._call: Any = None
        self._lock = threading.Lock()
        self.cursor = cursor
        """The cursor of the last update (pass it to ``watch(cursor=...)`` to resume after it)."""
        self.progress: dict[str, int] | None = None
        """The latest counts seen."""
        self._updates = self._follow()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._updates)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ends the stream: the iterator stops."""
        self._closed.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()

    def _follow(self) -> Iterator[dict[str, Any]]:
        delay = self._policy.initial_delay
        failures = 0
        while not self._closed.is_set():
            request = job_service_pb2.WatchRequest(table=self._table, cursor=self.cursor, counts_only=self._counts_only, grouped_events=True)
            with self._lock:
                if self._closed.is_set():
                    return
                self._call = self._connection.watch(request)
            try:
                for message in self._call:
                    # A message proves the stream works: the next cut starts a fresh backoff.
                    failures = 0
                    delay = self._policy.initial_delay
                    if message.HasField("progress"):
                        self.progress = progress_counts(message.progress)
                    if message.cursor:
                        self.cursor = message.cursor
                    yield {
                        "cursor": self.cursor,
                        "progress": self.progress,
                        "events": _events(message),
                    }
                # The server ended the stream (it is shutting down): resume, after a backoff.
            except grpc.RpcError as err:
                if self._closed.is_set():
                    return
                error = from_rpc_error(err)
                if not is_retryable(error.code):
                    raise error from err
                failures += 1
                if failures >= self._policy.max_attempts:
                    raise error from err
            finally:
                with self._lock:
                    if self._call is not None:
                        self._call.cancel()
                    self._call = None
            if self._closed.wait(jittered(delay)):
                return
            delay = min(delay * 2, self._policy.max_delay)
