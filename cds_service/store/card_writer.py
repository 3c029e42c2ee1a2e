"""The card log's background writer: cards are written after the answer, in batches, and kept
while the database cannot take them.

A hook call hands its cards' rows to ``put`` and goes on. The writer thread gathers the rows
of the calls made within ``WRITE_DELAY`` into one write, ``CHUNK`` rows a transaction (sooner
when asked to flush, and at once while more calls than one batch are queued: it keeps up with
any rate of calls).
When the database is down (or refuses the write), the rows are kept in memory, up to
``PENDING_LIMIT`` rows, and written when it answers again: retried after 1, 2, 5, 10, then
every 15 s, and at once when someone flushes. Past the limit the oldest rows are dropped; so
are the rows still waiting when the process exits (after ``EXIT_SECONDS`` of trying). Rows
dropped are real losses: counted by ``on_lost`` (the metric
``pgx_cds_card_log_lost_total``) and logged.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.lifetimes import at_exit

log = logging.getLogger("cds_service.card_log")

#: At most this many calls' cards gathered at once (written ``CHUNK`` rows a transaction).
#: It bounds a batch, not the rate: with calls queued beyond it the writer writes again
#: without waiting ``WRITE_DELAY``. (It was 100, with the delay after every batch: at most
#: 500 calls a second, fewer than one worker answers on the alerting path, so the queue grew
#: until cards were lost, and the garbage collector scanned it in every full collection.)
WRITE_BATCH = 5_000
#: The writer gathers the cards of the calls made within this long into one write (sooner
#: when asked to flush): its database work, a few tenths of a millisecond of CPU a write, is
#: then paid once for many calls, not at the start of each next call, where it would hold
#: the interpreter lock while that call builds its FHIR reads. It was 0.2 s; once a write
#: was three round trips on PostgreSQL (``card_log._write``), smaller writes more often
#: left the alerting calls a shorter tail on both databases (alternating runs under load,
#: p99 against the trivial app: PostgreSQL 1.81 at 0.2 s, 1.63 at 0.1 s, 1.52 at 0.05 s;
#: SQLite 1.72 and 1.60), the same throughput, and a card is in the database sooner.
WRITE_DELAY = 0.05
#: Rows kept while the database cannot take them (a few hundred bytes each: a few MB).
PENDING_LIMIT = 20_000
#: Rows written in one transaction when catching up.
CHUNK = 1_000
#: Seconds between tries while the database refuses the rows (the last one repeats).
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 15.0)
#: At exit, how long the writer may still try to write what is waiting.
EXIT_SECONDS = 5.0
QUEUE_LIMIT = 10_000

Rows = list[dict[str, Any]]


class CardWriter:
    def __init__(
        self, write: Callable[[Rows], bool], on_lost: Callable[[int], None] | None = None
    ) -> None:
        """``write(rows)``: True once the rows are committed, False if the database refused
        them (they are kept and tried again)."""
        self._write = write
        self.on_lost = on_lost
        self._queue: queue.Queue[Rows | None] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hurry = threading.Event()  # flush: write now, not after the delay or backoff
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._failures = 0
        self._next_try = 0.0
        self._last_try = 0.0
        self.lost = 0
        self._exit_hook = False

    # -- handing rows over ------------------------------------------------------------

    def put(self, rows: Rows) -> None:
        """Hand one call's rows over; the call's thread takes no lock but the queue's own
        (the writer's lock only when its thread is to be started)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()
        assert self._queue is not None
        try:
            self._queue.put_nowait(rows)
        except queue.Full:
            self.lose(len(rows), "the card log's queue is full")

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._queue = queue.Queue(maxsize=QUEUE_LIMIT)
                self._thread = threading.Thread(
                    target=self._drain, name="card-log-writer", daemon=True
                )
                self._thread.start()
                if not self._exit_hook:
                    self._exit_hook = True
                    at_exit(self.close)

    @property
    def failing(self) -> bool:
        """Did the last write fail (rows are kept for the database)?"""
        return self._failures > 0 and bool(self._pending)

    @property
    def waiting(self) -> int:
        """Rows kept because the database could not take them yet."""
        return len(self._pending)

    def lose(self, count: int, why: str) -> None:
        if count <= 0:
            return
        self.lost += count
        log.error("card log: %d card(s) lost: %s", count, why)
        if self.on_lost is not None:
            try:
                self.on_lost(count)
            except Exception:  # a counter must never stop the writer
                log.exception("card log: counting lost cards failed")

    # -- the writer thread ------------------------------------------------------------

    def _drain(self) -> None:
        """Write what is queued, in one transaction for all the calls queued within
        ``WRITE_DELAY``; keep it while the database refuses it."""
        assert self._queue is not None
        behind = False  # the last batch was full: more calls are waiting, write them now
        while True:
            wait = None
            if self._pending:
                wait = max(0.0, min(self._next_try - time.monotonic(), 0.2))
            try:
                batch: list[Rows | None] = [self._queue.get(timeout=wait)]
            except queue.Empty:
                batch = []
            if batch and batch[0] is not None and not behind:
                self._hurry.wait(WRITE_DELAY)
            hurried = self._hurry.is_set()
            self._hurry.clear()
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            behind = len(batch) >= WRITE_BATCH
            for item in batch:
                if item is not None:
                    self._pending.extend(item)
            over = len(self._pending) - PENDING_LIMIT
            if over > 0:
                for _ in range(over):
                    self._pending.popleft()
                self.lose(over, f"more than {PENDING_LIMIT} cards waiting for the database")
            now = time.monotonic()
            # (a flush hurries a retry too, but not more than twice a second)
            hurried = hurried and now - self._last_try >= 0.5
            if self._pending and (hurried or None in batch or now >= self._next_try):
                self._last_try = now
                self._write_pending()
            for _ in batch:
                self._queue.task_done()
            if None in batch:
                return

    def _write_pending(self) -> None:
        while self._pending:
            rows = [self._pending[i] for i in range(min(CHUNK, len(self._pending)))]
            if not self._write(rows):
                delay = RETRY_SECONDS[min(self._failures, len(RETRY_SECONDS) - 1)]
                self._failures += 1
                self._next_try = time.monotonic() + delay
                if self._failures == 1:
                    log.warning(
                        "card log: the database cannot take cards now; %d card(s) kept and "
                        "written when it is back",
                        len(self._pending),
                    )
                return
            for _ in rows:
                self._pending.popleft()
            if self._failures:
                log.warning("card log: the database is back; the cards kept are written")
            self._failures = 0

    # -- waiting for it ---------------------------------------------------------------

    def flush(self, timeout: float | None = None, *, kept: bool = True) -> bool:
        """Wait until every row handed over is written (tests, shutdown, before feedback is
        stored), at most ``timeout`` seconds; False if rows are still waiting then. Without
        ``kept``, rows kept for a database that was down are not waited for."""
        q, thread = self._queue, self._thread
        if q is None or thread is None or not thread.is_alive():
            return True
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with q.all_tasks_done:
                idle = not q.unfinished_tasks
            if idle and not (kept and self._pending):
                return True
            self._hurry.set()  # (again: the writer may have taken the last call's hurry)
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with q.all_tasks_done:
                if q.unfinished_tasks:
                    q.all_tasks_done.wait(0.05 if remaining is None else min(remaining, 0.05))
                    continue
            time.sleep(0.05 if remaining is None else min(remaining, 0.05))

    def close(self) -> None:
        """At exit (or when the app is closed): write what is waiting, within
        ``EXIT_SECONDS`` (one second when the database is failing already); count the rest as
        lost; end the thread."""
        if not self.flush(timeout=min(EXIT_SECONDS, 1.0) if self._failures else EXIT_SECONDS):
            self.lose(len(self._pending), "the process stopped while the database was away")
            self._pending.clear()
        q, thread = self._queue, self._thread
        if q is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(queue.Full):
                q.put(None, timeout=1.0)  # the thread ends (a later ``put`` starts another)
            thread.join(1.0)
