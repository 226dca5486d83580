"""One timer thread for every session's reply delay.

Each reply is a due time on a heap; a single daemon thread sleeps on a condition
variable until the earliest one. No lock is held while waiting, so hundreds of
sessions can be "thinking" at once without a thread each and without blocking
request handlers.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Scheduler:
    """Runs callbacks at (or just after) their due time, in due-time order."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._condition:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="emulator-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._heap.clear()
            self._condition.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def call_later(self, delay_seconds: float, callback: Callable[[], None]) -> None:
        """Schedule ``callback``; callbacks check themselves whether they are still wanted."""
        due = time.monotonic() + max(0.0, delay_seconds)
        with self._condition:
            heapq.heappush(self._heap, (due, next(self._sequence), callback))
            self._condition.notify()

    def clear(self) -> None:
        with self._condition:
            self._heap.clear()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopping:
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._condition.wait(timeout)
                if self._stopping:
                    return
                _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # a broken callback must not stop every other session's replies
                log.exception("emulator scheduled callback failed")
