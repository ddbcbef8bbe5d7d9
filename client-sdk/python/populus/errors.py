"""Every error the SDK raises, and the one place where a gRPC status becomes a
typed error (:func:`from_rpc_error`), as in the TypeScript SDK's errors.ts.

The original ``grpc.RpcError`` is kept as ``__cause__`` (``raise ... from``)
so that its metadata stays reachable.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import grpc

from populus.v1 import types_pb2


class PopulusError(Exception):
    """Base of every SDK error; ``code`` is the gRPC status code of the answer
    (or the closest one for a local error)."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidArgumentError(PopulusError, ValueError):
    """INVALID_ARGUMENT: the request (or a key, option or result) is malformed;
    the message says what to fix."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidConfigError(InvalidArgumentError):
    """A bad ``connect()`` option, ``config.jobs`` value or ``POPULUS_*`` variable."""


class TableNotFoundError(PopulusError, LookupError):
    """NOT_FOUND: the table was never refreshed (declared) on this server."""

    code = grpc.StatusCode.NOT_FOUND


class LeaseLostError(PopulusError):
    """FAILED_PRECONDITION: leases no longer held (expired and reassigned,
    released, ignored or deleted). ``lease_tokens`` names them when the server
    said which (its LeaseLostDetail)."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, lease_tokens: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.lease_tokens: tuple[str, ...] = tuple(lease_tokens)


class UnavailableError(PopulusError, ConnectionError):
    """UNAVAILABLE: the server or its database cannot be reached (retried before it surfaces)."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhaustedError(PopulusError):
    """RESOURCE_EXHAUSTED: a batch above the server's limit, or the server is overloaded."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnauthenticatedError(PopulusError):
    """UNAUTHENTICATED: the server requires a bearer token and none or a wrong one was sent."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(PopulusError):
    """PERMISSION_DENIED: the token's role may not call this RPC."""

    code = grpc.StatusCode.PERMISSION_DENIED


class CursorExpiredError(PopulusError):
    """OUT_OF_RANGE: a ``jobs.watch(cursor=...)`` cursor whose events the server
    has pruned; watch again without a cursor."""

    code = grpc.StatusCode.OUT_OF_RANGE


class WorkerStoppingError(PopulusError):
    """The reason a make's ``ctx.signal`` fires when populate is told to stop
    (SIGTERM/SIGINT or ``stop``) and the grace period ended."""

    code = grpc.StatusCode.CANCELLED


class MakeError(PopulusError):
    """A make failed: raised by populate with ``suppress_errors=False``, after
    the failure was recorded as an error job. ``key`` is the key."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, key: Mapping[str, Any], message: str) -> None:
        super().__init__(message)
        self.key = dict(key)


class WorkerProcessError(PopulusError):
    """A populate child process could not run: its make could not be sent to
    it, or it died before reporting."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[PopulusError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: TableNotFoundError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.OUT_OF_RANGE: CursorExpiredError,
}


def from_rpc_error(err: BaseException) -> PopulusError:
    """The typed error of a failed call (the single mapping of gRPC codes):
    INVALID_ARGUMENT → InvalidArgumentError, NOT_FOUND → TableNotFoundError,
    FAILED_PRECONDITION → LeaseLostError (tokens from LeaseLostDetail),
    UNAVAILABLE → UnavailableError, RESOURCE_EXHAUSTED → ResourceExhaustedError,
    UNAUTHENTICATED → UnauthenticatedError, PERMISSION_DENIED →
    PermissionDeniedError, OUT_OF_RANGE → CursorExpiredError; any other code
    → PopulusError with that code. The message is the server's. A
    PopulusError passes through."""
    if isinstance(err, PopulusError):
        return err
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    typed: PopulusError
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        typed = LeaseLostError(message, _lost_lease_tokens(err))
    elif code in _BY_CODE:
        typed = _BY_CODE[code](message)
    else:
        typed = PopulusError(message, code)
    typed.__cause__ = err
    return typed


def _lost_lease_tokens(err: BaseException) -> list[str]:
    """The tokens of the LeaseLostDetail in the answer's grpc-status-details-bin
    trailer (a google.rpc.Status), or none."""
    trailers = err.trailing_metadata() if isinstance(err, grpc.Call) else None
    for name, value in trailers or ():
        if name != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        tokens: list[str] = []
        try:
            # google.rpc.Status: field 3 holds the details, each a google.protobuf.Any.
            for field, status_part in _fields(value):
                if field != 3:
                    continue
                any_parts = dict(_fields(status_part))
                if any_parts.get(1, b"").endswith(b"/populus.v1.LeaseLostDetail"):
                    detail = types_pb2.LeaseLostDetail.FromString(any_parts.get(2, b""))
                    tokens.extend(detail.lease_tokens)
        except ValueError:
            return []
        return tokens
    return []


def _fields(data: bytes):
    """The length-delimited fields of a protobuf message as (number, bytes);
    varint fields are skipped. google.rpc.Status is not shipped with Debian's
    protobuf, and these few lines read the one part we need."""
    i = 0
    while i < len(data):
        tag, i = _varint(data, i)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, i = _varint(data, i)
        elif wire_type == 2:
            length, i = _varint(data, i)
            if i + length > len(data):
                raise ValueError("truncated field")
            yield number, data[i : i + length]
            i += length
        else:
            raise ValueError(f"unexpected wire type {wire_type}")


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
