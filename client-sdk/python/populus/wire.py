"""Conversions between the wire's well-known types and Python values, in one
place: Timestamps become aware UTC datetimes (None when unset), Durations go
to and from seconds."""

from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf import duration_pb2, timestamp_pb2


def datetime_of(message: object, field: str) -> datetime | None:
    """The Timestamp ``field`` of ``message`` as a UTC datetime; None when unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    ts: timestamp_pb2.Timestamp = getattr(message, field)
    return ts.ToDatetime(tzinfo=timezone.utc)


def seconds_of(message: object, field: str) -> float | None:
    """The Duration ``field`` of ``message`` in seconds; None when unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    d: duration_pb2.Duration = getattr(message, field)
    return d.seconds + d.nanos / 1e9


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration of ``seconds`` (fractions kept to the nanosecond)."""
    whole = int(seconds)
    nanos = round((seconds - whole) * 1e9)
    # A fraction within half a nanosecond of 1 rounds up to the next whole second (nanos stays below 1e9).
    if nanos == 1_000_000_000:
        whole, nanos = whole + 1, 0
    return duration_pb2.Duration(seconds=whole, nanos=nanos)
