"""The JobService connection of one ``connect()``: a gRPC channel with the
bearer token, retries (retry.py) and typed errors (errors.py) applied to every
unary call, and typed errors to the Watch stream. The rest of the SDK calls
the server only through this.

A call given a ``stop`` (a GracefulStop) is cancelled when that stops: an
idle worker's long-poll (ClaimRefresh with ``wait``, up to a minute on the
server) must not hold a worker that was told to stop. The server hears the
cancel and ends its wait (answering nobody; a claim is not granted to a
caller gone).
"""

from __future__ import annotations

import threading
from typing import Any

import grpc

from populus.config import ConnectOptions
from populus.errors import from_rpc_error
from populus.graceful_stop import GracefulStop, wait_in_slices
from populus.retry import DEFAULT_RETRY, RetryPolicy, with_retry
from populus.v1 import job_service_pb2_grpc

# The server takes requests of up to 16 MiB and answers up to as much (a page
# of 1000 jobs with their stacks); gRPC's default receive limit is 4 MiB.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    # A Watch stream can be quiet for hours: pings find a connection that died
    # silently (a NAT or a peer gone without a FIN), as the TS SDK's do.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 0),
    # A connection of its own per Connection (gRPC would share one per target
    # and options process-wide): the heartbeat thread's renewals do not queue
    # behind a large Complete of the loop, as in the TypeScript SDK.
    ("grpc.use_local_subchannel_pool", 1),
]


class Connection:
    """A channel to one server, opened lazily; usable from any thread (gRPC
    channels are thread-safe), not across fork (child processes open their own)."""

    def __init__(self, options: ConnectOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: job_service_pb2_grpc.JobServiceStub | None = None
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {options.token}"),) if options.token is not None else ()
        )

    @property
    def stub(self) -> job_service_pb2_grpc.JobServiceStub:
        with self._lock:
            return self._open()

    def _open(self) -> job_service_pb2_grpc.JobServiceStub:
        if self._stub is None:
            if self.options.tls:
                credentials = grpc.ssl_channel_credentials(root_certificates=self.options.ca)
                self._channel = grpc.secure_channel(self.options.target, credentials, options=_CHANNEL_OPTIONS)
            else:
                self._channel = grpc.insecure_channel(self.options.target, options=_CHANNEL_OPTIONS)
            self._stub = job_service_pb2_grpc.JobServiceStub(self._channel)
        return self._stub

    def call(
        self, method: str, request: Any, *, timeout: float | None = None, policy: RetryPolicy = DEFAULT_RETRY, stop: GracefulStop | None = None
    ) -> Any:
        """A unary RPC by name (``"Reserve"``), retried, raising the SDK's typed
        errors. With ``stop``, its stop cancels the call in flight, which then
        raises grpc.FutureCancelledError, and ends the waits between retries
        (the last error is raised)."""
        used: list[job_service_pb2_grpc.JobServiceStub] = []

        def attempt() -> Any:
            stub = self.stub
            used.append(stub)
            rpc: Any = getattr(stub, method)
            if stop is None:
                return rpc(request, timeout=timeout, metadata=self._metadata)
            return _until_stopped(rpc.future(request, timeout=timeout, metadata=self._metadata), stop)

        def on_retry(err: grpc.RpcError) -> None:
            # After a failed connect a gRPC channel waits before it tries again (1 s, growing to
            # 120 s) and fails every call at once meanwhile, so our retries would only ever meet
            # that wait: a server restarted within them was not reached again (tests/test_retry.py).
            # A fresh channel connects at once.
            if err.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect" in (err.details() or ""):
                self._renew(used[-1])

        try:
            return with_retry(attempt, policy, stop=None if stop is None else stop.stopping, on_retry=on_retry)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err

    def _renew(self, failed: job_service_pb2_grpc.JobServiceStub) -> None:
        """Drops the channel of ``failed`` (unless another caller already did);
        the next call opens a new one. Not closed: calls still on it (a Watch
        stream) end on their own."""
        with self._lock:
            if self._stub is failed:
                self._stub = None
                self._channel = None

    def watch(self, request: Any) -> Any:
        """The Watch stream call (an iterator of WatchResponse that is also a
        grpc.Call, so ``cancel()`` ends it). Not retried: watch.py resumes it
        with the last cursor."""
        return self.stub.Watch(request, metadata=self._metadata)

    def close(self) -> None:
        """Closes the channel; the next call opens a new one."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None
            self._stub = None


def _until_stopped(future: Any, stop: GracefulStop) -> Any:
    """The answer of a call in flight (a grpc.Future), unless ``stop`` stops
    first: the call is then cancelled, and grpc.FutureCancelledError raised.
    Woken by either, with no polling; the call is cancelled on any way out (a
    KeyboardInterrupt too), so no call outlives its caller's wait."""
    wake = threading.Event()
    future.add_done_callback(lambda _done: wake.set())
    remove = stop.on_stop(wake.set)
    try:
        wait_in_slices(wake)
    finally:
        remove()
        if not future.done():
            future.cancel()
    return future.result()
