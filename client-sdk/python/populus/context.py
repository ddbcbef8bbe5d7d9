"""What make receives besides its key: ``ctx.key``, ``ctx.attempt``,
``ctx.signal`` and ``ctx.progress()``, as the TypeScript SDK's MakeContext."""

from __future__ import annotations

import math
import threading
from typing import Any, Callable


class AbortSignal:
    """Fires when a make should give up: its lease was lost (``reason`` is a
    LeaseLostError: the result would not be committed) or the worker is
    stopping and the grace period ended (``reason`` is a WorkerStoppingError).
    A long make checks ``aborted``, waits on it instead of sleeping, or calls
    ``raise_if_aborted()``."""

    __slots__ = ("_event", "_reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason: BaseException | None = None

    @property
    def aborted(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> BaseException | None:
        """Why it fired, or None."""
        return self._reason

    def wait(self, timeout: float | None = None) -> bool:
        """Waits up to ``timeout`` seconds for the signal; True if it fired."""
        return self._event.wait(timeout)

    def raise_if_aborted(self) -> None:
        """Raises the reason when the signal fired."""
        if self._reason is not None:
            raise self._reason

    def _abort(self, reason: BaseException) -> None:
        if self._reason is None:
            self._reason = reason
            self._event.set()


class MakeContext:
    """make's second argument."""

    __slots__ = ("key", "attempt", "signal", "_report")

    def __init__(self, key: dict[str, Any], attempt: int, signal: AbortSignal, report: Callable[[float, str], None]) -> None:
        self.key = key
        """The job's key (the same dict as make's first argument)."""
        self.attempt = attempt
        """Which lease of this job this is, from 1 (2 and up: an earlier worker was lost or released it)."""
        self.signal = signal
        """Fires when the lease is lost or the worker stops (see AbortSignal)."""
        self._report = report

    def progress(self, fraction: float, message: str = "") -> None:
        """Reports progress within the job, 0 to 1, with an optional message; sent with the next heartbeat."""
        f = float(fraction) if isinstance(fraction, (int, float)) and math.isfinite(fraction) else 0.0
        self._report(min(1.0, max(0.0, f)), str(message)[:255])
