"""How populate stops, as a small state machine: ``running → stopping``
(nothing more is reserved; running makes may finish and commit) ``→
cancelled`` (the grace period ended: makes' ``ctx.signal`` fires and every
held lease is released without charging an attempt).

``handle_signals`` wires SIGTERM and SIGINT to it for the duration of a
populate: the first signal stops gracefully, a second one raises
KeyboardInterrupt at once (the reserve loop then releases what it holds and
lets it propagate). It installs handlers only in the main thread and only
where the application has not installed its own, and restores them after.

``on_stop`` callbacks hear the move to stopping: a wait on the server (an
idle worker's ClaimRefresh long-poll, ``Table.wait_for_work``) cancels its
call in flight so, rather than hold a stopping worker for up to a minute.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Callable, Iterator

SIGNAL_CHECK_S = 0.25
"""The longest a wait of the main thread blocks before it runs Python code
again (wait_in_slices)."""


def wait_in_slices(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)`` in slices of at most SIGNAL_CHECK_S. Python runs
    a signal handler (the worker's SIGTERM: stop) only in the main thread, when
    it next runs Python code. The kernel may deliver the signal to another of
    the process's threads (gRPC's), which does not wake the main thread from a
    wait with no end: a stopping worker then waited out its long-poll (up to a
    minute) before it heard its SIGTERM."""
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SIGNAL_CHECK_S if end is None else min(SIGNAL_CHECK_S, end - time.monotonic())
        if left <= 0:
            return event.is_set()
        if event.wait(left):
            return True


class GracefulStop:
    """The stop state of one populate (or one child process of it)."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.cancelled = threading.Event()
        # Reentrant: a signal handler (python -m populus.worker's) calls stop() in the main thread,
        # which may be inside on_stop()/on_cancel() at that moment.
        self._lock = threading.RLock()
        self._on_stop: list[Callable[[], None]] = []
        self._on_cancel: list[Callable[[], None]] = []
        self._timer: threading.Timer | None = None

    def stop(self, grace: float) -> None:
        """Reserve nothing more; after ``grace`` seconds, cancel."""
        with self._lock:
            if self.stopping.is_set():
                return
            self.stopping.set()
            stopped = list(self._on_stop)
            if grace > 0:
                self._timer = threading.Timer(grace, self.cancel)
                self._timer.daemon = True
                self._timer.start()
        for callback in stopped:
            callback()
        if grace <= 0:
            self.cancel()

    def pause(self, seconds: float) -> bool:
        """Waits ``seconds``, or less when stopping begins; answers whether it
        has. In slices (wait_in_slices), so that a SIGTERM the kernel delivers
        to one of gRPC's threads ends it too, not only when it is over."""
        return wait_in_slices(self.stopping, seconds)

    def cancel(self) -> None:
        """Fires running makes' signals and releases what is held (the callbacks)."""
        with self._lock:
            if self.cancelled.is_set():
                return
            stopped = [] if self.stopping.is_set() else list(self._on_stop)
            self.stopping.set()
            self.cancelled.set()
            callbacks = list(self._on_cancel)
        for callback in stopped:
            callback()
        for callback in callbacks:
            callback()

    def on_stop(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls ``callback`` when stopping begins (at once when already
        stopping); answers what removes it again. Used to cancel a wait on the
        server, which ``stopping`` alone could not wake."""
        return self._subscribe(self._on_stop, self.stopping, callback)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls ``callback`` at cancel (at once when already cancelled); answers
        what removes it again (a GracefulStop may outlive many populates, as
        ``python -m populus.worker``'s does)."""
        return self._subscribe(self._on_cancel, self.cancelled, callback)

    def _subscribe(self, callbacks: list[Callable[[], None]], fired: threading.Event, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            callbacks.append(callback)
            already = fired.is_set()
        if already:
            callback()

        def remove() -> None:
            with self._lock:
                if callback in callbacks:
                    callbacks.remove(callback)

        return remove

    def dispose(self) -> None:
        """Cancels the grace timer and forgets the callbacks (the populate that made this one is over)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._on_stop.clear()
            self._on_cancel.clear()


@contextlib.contextmanager
def handle_signals(stop: GracefulStop, grace: float, enabled: bool = True) -> Iterator[None]:
    """SIGTERM/SIGINT → ``stop.stop(grace)``, a second one → KeyboardInterrupt; see the module comment."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, object] = {}

    def handler(signum: int, frame: object) -> None:
        if stop.stopping.is_set():
            raise KeyboardInterrupt
        stop.stop(grace)

    for signum, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
        current = signal.getsignal(signum)
        if current is default:
            previous[signum] = current
            signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)  # type: ignore[arg-type]
