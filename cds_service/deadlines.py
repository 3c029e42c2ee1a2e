"""One thread per process that acts on deadlines: it cuts a socket read that runs past its
time (a FHIR read past the call's budget, a request that arrives too slowly).

A timer thread per read cost about a tenth of a millisecond each, on every FHIR read; socket
timeouts apply per read, so a peer sending one byte a second never trips them.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from typing import Protocol


class Deadline(Protocol):
    """What the watchdog holds: ``done`` once the guarded work ended (it is then dropped),
    ``expire`` called once, from the watchdog's thread, when the time came first."""

    done: bool

    def expire(self) -> None: ...


class Watchdog:
    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, when: float, deadline: Deadline) -> None:
        """Call ``deadline.expire()`` at ``when`` (``time.monotonic``) unless it is done."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (when, next(self._order), deadline))
            if self._heap[0][2] is deadline:  # sooner than the one the thread waits for
                self._cond.notify()

    @staticmethod
    def disarm(deadline: Deadline) -> None:
        deadline.done = True  # taken off the heap when its turn comes

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                when, _, deadline = self._heap[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
            if not deadline.done:
                deadline.expire()


WATCHDOG = Watchdog()
