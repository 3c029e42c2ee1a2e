"""Database work with a deadline, so that a database that stops answering cannot hold a call.

A database that refuses connections fails fast and each caller falls back (the card log
stops suppressing, the replay check remembers tokens in memory, feedback answers 503). One
that accepts and then never answers (a paused server, a lost network path, a lock held for
ever) is worse: the driver waits without end, and every hook call that touches it holds a
server thread until the database comes back. ``Bounded.run`` runs the work on a thread of its
own and gives up after ``timeout`` seconds with ``DatabaseTimeout`` (an ``SQLAlchemyError``,
so the callers' existing fallbacks apply). While earlier work is still stuck, new work is
refused at once rather than queued behind it.

An in-memory SQLite database exists once per thread: its work runs in the caller's thread.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

T = TypeVar("T")


class DatabaseTimeout(SQLAlchemyError):
    """The database did not answer in time (or earlier work is still waiting for it)."""


class Bounded:
    def __init__(self, engine: Engine, name: str, threads: int = 2) -> None:
        url = engine.url
        self.inline = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
        self._threads = threads
        self._name = name
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # gunicorn forks after create_app

    def _reset(self) -> None:
        self._busy = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=f"db-{self._name}")

    def run(self, work: Callable[[], T], timeout: float) -> T:
        if self.inline:
            return work()
        with self._lock:
            if self._busy >= self._threads:
                raise DatabaseTimeout("earlier database work is still waiting for an answer")
            self._busy += 1
        context = contextvars.copy_context()  # the request id, for its log lines

        def job() -> T:
            try:
                return context.run(work)
            finally:
                with self._lock:
                    self._busy -= 1

        future = self._pool.submit(job)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            raise DatabaseTimeout(f"no answer from the database within {timeout:g} s") from None
