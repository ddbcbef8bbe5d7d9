"""``populate(display_progress=True)``: a line on stderr every 2 s and one at
the end, e.g. ``Mean: 120/300 done, 3 errors, 4 reserved, 2.1 s, 57 keys/s``,
from the server's counts for the whole table (done = target + error, total =
done + pending + reserved, as ``jobs.progress()`` counts), drawn from a
thread of its own."""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

from populus.errors import PopulusError


class ProgressDisplay:
    def __init__(self, table: str, counts: Callable[[], dict[str, int]], stream: TextIO | None = None, interval: float = 2.0) -> None:
        self._table = table
        self._counts = counts
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._started = time.monotonic()
        self._first_done: int | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"populus-progress-{table}", daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()
        self._draw()
        self._thread.start()

    def finish(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
        self._draw()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            self._draw()

    def _draw(self) -> None:
        try:
            p = self._counts()
        except PopulusError:
            return  # the next line tries again
        done = p["target"] + p["error"]
        if self._first_done is None:
            self._first_done = done
        elapsed = time.monotonic() - self._started
        rate = (done - self._first_done) / elapsed if elapsed > 0 else 0.0
        self._stream.write(
            f"{self._table}: {done}/{done + p['pending'] + p['reserved']} done, {p['error']} errors, "
            f"{p['reserved']} reserved, {elapsed:.1f} s, {rate:.0f} keys/s\n"
        )
        self._stream.flush()
