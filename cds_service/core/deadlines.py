"""One thread per process that acts on deadlines: it cuts a socket read that runs past its
time (a FHIR read past the call's budget, a request that arrives too slowly).

A timer thread per read cost about a tenth of a millisecond each, on every FHIR read; socket
timeouts apply per read, so a peer sending one byte a second never trips them.

The thread looks at its deadlines at least every ``TICK_S``; only a deadline due sooner than
its next look wakes it. So the usual deadlines (a hook call's 2 s for its FHIR reads, 10 s to
receive a request) are armed without waking it, in the middle of a call that would then
wait for the interpreter lock while it runs.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from typing import Protocol


class Deadline(Protocol):
    """What the watchdog holds: ``done`` once the guarded work ended (it is then dropped),
    ``expire`` called once, from the watchdog's thread, when the time came first."""

    done: bool

    def expire(self) -> None: ...


#: The longest the watchdog thread waits before it looks at its deadlines again (seconds).
TICK_S = 0.5


class Watchdog:
    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        #: when the thread looks next (``time.monotonic``); -inf: it is not waiting
        self._looks_at = -math.inf
        self.wakeups = 0  # times an arm woke the thread (for tests)

    def arm(self, when: float, deadline: Deadline) -> None:
        """Call ``deadline.expire()`` at ``when`` (``time.monotonic``) unless it is done."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (when, next(self._order), deadline))
            if when < self._looks_at:  # due before the thread looks again
                self._looks_at = -math.inf
                self.wakeups += 1
                self._cond.notify()

    @staticmethod
    def disarm(deadline: Deadline) -> None:
        deadline.done = True  # taken off the heap when its turn comes

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                now = time.monotonic()
                when, _, deadline = self._heap[0] if self._heap else (math.inf, 0, None)
                if when > now:
                    self._looks_at = min(when, now + TICK_S)
                    self._cond.wait(self._looks_at - now)
                    self._looks_at = -math.inf
                    continue
                heapq.heappop(self._heap)
            assert deadline is not None
            if not deadline.done:
                deadline.expire()


WATCHDOG = Watchdog()
