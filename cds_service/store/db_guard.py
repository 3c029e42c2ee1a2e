"""Database work with a deadline, so that a database that stops answering cannot hold a call.

A database that refuses connections fails fast and each caller falls back (the card log
stops suppressing, the replay check remembers tokens in memory, feedback answers 503). One
that accepts and then never answers (a paused server, a lost network path, a lock held for
ever) is worse: the driver waits without end, and every hook call that touches it holds a
server thread until the database comes back. ``Bounded.run`` runs the work on a thread of its
own and gives up after ``timeout`` seconds with ``DatabaseTimeout`` (an ``SQLAlchemyError``,
so the callers' existing fallbacks apply). Work running at the same moment for other calls
is waited for in turn; once work given up on is still stuck (``stuck_limit`` jobs), new work
is refused at once rather than queued behind it, until the stuck work returns.

An in-memory SQLite database exists once per thread: its work runs in the caller's thread.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..core.lifetimes import after_fork_in_child

T = TypeVar("T")


class DatabaseTimeout(SQLAlchemyError):
    """The database did not answer in time (or earlier work is still waiting for it)."""


class Bounded:
    def __init__(self, engine: Engine, name: str, threads: int = 8, stuck_limit: int = 2) -> None:
        url = engine.url
        self.inline = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
        self._threads = threads
        self._stuck_limit = stuck_limit
        self._name = name
        self._reset()
        after_fork_in_child(self._reset)  # gunicorn forks after create_app

    def _reset(self) -> None:
        self._stuck = 0  # jobs given up on that have not returned yet
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=f"db-{self._name}")

    def close(self) -> None:
        """Let the idle threads go (work still running finishes); a later call starts new
        ones."""
        old, self._pool = (
            self._pool,
            ThreadPoolExecutor(self._threads, thread_name_prefix=f"db-{self._name}"),
        )
        old.shutdown(wait=False)

    def submit(self, work: Callable[[], object]) -> bool:
        """Start ``work()`` on the pool without waiting for it; False when it cannot be (an
        in-memory database, whose work must run in the caller's thread, or work given up on
        still stuck)."""
        if self.inline or self._stuck >= self._stuck_limit:
            return False
        try:
            self._pool.submit(contextvars.copy_context().run, work)
        except RuntimeError:  # the interpreter is shutting down: no new threads
            return False
        return True

    def run(self, work: Callable[[], T], timeout: float) -> T:
        """``work()``, or ``DatabaseTimeout`` after ``timeout`` seconds. Work that is merely
        running (other calls at the same moment) is waited for in turn; only when work given
        up on is still stuck is new work refused at once."""
        if self.inline:
            return work()
        if self._stuck >= self._stuck_limit:
            raise DatabaseTimeout("earlier database work is still waiting for an answer")
        context = contextvars.copy_context()  # the request id, for its log lines
        state = {"done": False, "abandoned": False}

        def job() -> T:
            try:
                return context.run(work)
            finally:
                with self._lock:
                    state["done"] = True
                    if state["abandoned"]:
                        self._stuck -= 1

        future = self._pool.submit(job)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            with self._lock:
                if not state["done"]:
                    state["abandoned"] = True
                    if not future.cancel():  # still queued: cancelled, never runs
                        self._stuck += 1
            raise DatabaseTimeout(f"no answer from the database within {timeout:g} s") from None
