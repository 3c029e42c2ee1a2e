"""JWT replay protection shared by every process and replica, surviving restarts.

Each accepted client JWT's ``iss|jti`` is written (as a SHA-256, so the table holds no
token material) to the table ``jwt_replay`` of the service's SQL database, with the time
after which the token could no longer be accepted anyway. The primary key makes a second
use fail wherever it arrives. Expired rows are purged at most once a minute per process.

While the database cannot be reached, hook calls keep working: each process then
remembers the tokens it saw in memory (bounded, expiring) and logs a warning; readiness
reports the service as degraded.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import schema
from .db_guard import Bounded
from .tables import replay_table

log = logging.getLogger("cds_service.replay")


def _upgrade(engine: Engine) -> None:
    schema.upgrade(engine)


PURGE_EVERY = 60.0
DOWN_PAUSE = 15.0  # after a database failure, seconds before hook calls try it again
HOOK_DB_SECONDS = 0.5  # the longest a hook call waits for the database (then: memory)
MEMORY_LIMIT = 200_000  # tokens remembered per process while the database is down


class ReplayCache:
    def __init__(self, engine: Engine, prepare: Callable[[], None] | None = None) -> None:
        """``prepare`` brings the database schema up to date (the service passes what the
        feedback store uses: migrations, or a check when the site migrates separately);
        by default the migrations. The table is never made any other way: a table made
        outside the migrations would make them fail later."""
        self.engine = engine
        self._prepare = prepare or (lambda: _upgrade(engine))
        self._lock = threading.Lock()
        self._table_ready = False
        self._last_purge = 0.0
        self._down_until = 0.0  # monotonic: a failing database is not waited on by every call
        # fallback while the database is down: key -> expiry, and a heap to purge cheaply
        self._memory: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []
        self._bounded = Bounded(engine, "replay")
        with contextlib.suppress(SQLAlchemyError, schema.SchemaError):  # tried again on use
            self._ensure_table()

    def first_use(self, issuer: str, jti: str, expires_at: int) -> bool:
        """Record the token; False if it was used before (anywhere, unless the database is
        down: then in this process)."""
        key = hashlib.sha256(f"{issuer}|{jti}".encode("utf-8", "surrogatepass")).hexdigest()
        now = time.time()
        if time.monotonic() < self._down_until:
            return self._memory_first_use(key, expires_at, now)

        def record() -> bool:
            self._ensure_table()
            self._purge(now)
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(replay_table).values(jti_hash=key, expires_at=expires_at))
                return True
            except IntegrityError:
                # seen before; unless that row has expired and was not purged yet
                with self.engine.begin() as conn:
                    gone = conn.execute(
                        delete(replay_table).where(
                            replay_table.c.jti_hash == key, replay_table.c.expires_at < now
                        )
                    ).rowcount
                    if not gone:
                        return False
                    conn.execute(insert(replay_table).values(jti_hash=key, expires_at=expires_at))
                return True

        try:
            # a database that stops answering must not hold the hook call (see db_guard)
            return self._bounded.run(record, HOOK_DB_SECONDS)
        except (SQLAlchemyError, schema.SchemaError) as exc:
            self._down_until = time.monotonic() + DOWN_PAUSE
            log.warning(
                "replay cache database unavailable (%s): checking replays in this process only "
                "for %g s",
                type(exc).__name__,
                DOWN_PAUSE,
            )
            return self._memory_first_use(key, expires_at, now)

    def _memory_first_use(self, key: str, expires_at: float, now: float) -> bool:
        with self._lock:
            while self._expiries and self._expiries[0][0] < now:
                _, old = heapq.heappop(self._expiries)
                if self._memory.get(old, now + 1) < now:
                    del self._memory[old]
            if key in self._memory:
                return False
            if len(self._memory) >= MEMORY_LIMIT:
                return True  # cannot remember more; the database is the real record
            self._memory[key] = expires_at
            heapq.heappush(self._expiries, (expires_at, key))
            return True

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        try:
            self._prepare()
            self._table_ready = True
        except (SQLAlchemyError, schema.SchemaError) as exc:
            log.warning("replay cache table not created yet (%s)", type(exc).__name__)
            raise

    def _purge(self, now: float) -> None:
        if now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        with self.engine.begin() as conn:
            conn.execute(delete(replay_table).where(replay_table.c.expires_at < now))
