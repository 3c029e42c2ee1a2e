"""JWT replay protection shared by every process and replica, surviving restarts.

Each accepted client JWT's ``iss|jti`` is written (as a SHA-256, so the table holds no
token material) to the table ``jwt_replay`` of the service's SQL database, with the time
after which the token could no longer be accepted anyway. The primary key makes a second
use fail wherever it arrives. Expired rows are purged at most once a minute per process.

While the database cannot be reached, hook calls keep working: the tokens seen are then
remembered in a small SQLite file shared by the pod's worker processes (``PodReplay``: its
name is chosen when the app is made, before the workers fork, under the system's temporary
folder, created only when first needed, private to the service's user), so a token is
accepted at most once per replica, not once per worker; a warning is logged and readiness
reports the service as degraded. Replays across replicas are caught again once the
database is back. Sites that prefer to refuse authenticated calls while the database is
down set ``PGX_CDS_REPLAY_FALLBACK=refuse``: the check then answers 503 with
``Retry-After``, as it does when the shared file itself cannot be used.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..core.errors import ServiceUnavailable
from ..core.lifetimes import after_fork_in_child
from . import schema
from .db_guard import Bounded
from .tables import replay_table

log = logging.getLogger("cds_service.replay")


def _upgrade(engine: Engine) -> None:
    schema.upgrade(engine)


PURGE_EVERY = 60.0
DOWN_PAUSE = 15.0  # after a database failure, seconds before hook calls try it again
HOOK_DB_SECONDS = 0.5  # the longest a hook call waits for the database (then: memory)
POD_LIMIT = 200_000  # tokens remembered per pod while the database is down (then: 503)
RETRY_AFTER = 15  # seconds, in the 503 when no replay check can be made


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "client tokens cannot be checked for replay now (the service's database is "
        "unavailable); please retry",
        retry_after=RETRY_AFTER,
    )


class ReplayCache:
    def __init__(
        self,
        engine: Engine,
        prepare: Callable[[], None] | None = None,
        *,
        fallback: str = "pod",
        pod_file: Path | None = None,
    ) -> None:
        """``prepare`` brings the database schema up to date (the service passes what the
        feedback store uses: migrations, or a check when the site migrates separately);
        by default the migrations. The table is never made any other way: a table made
        outside the migrations would make them fail later. ``fallback``: ``pod`` (the
        shared file, ``pod_file`` or a new private name) or ``refuse`` (503)."""
        self.engine = engine
        self._prepare = prepare or (lambda: _upgrade(engine))
        self._lock = threading.Lock()
        self._table_ready = False
        self._last_purge = 0.0
        self._down_until = 0.0  # monotonic: a failing database is not waited on by every call
        self._pod = PodReplay(pod_file) if fallback == "pod" else None
        self._bounded = Bounded(engine, "replay")
        with contextlib.suppress(SQLAlchemyError, schema.SchemaError):  # tried again on use
            self._ensure_table()

    def close(self) -> None:
        """Let the database threads go and close the pod's file (reopened on use)."""
        self._bounded.close()
        if self._pod is not None:
            self._pod.close()

    def first_use(self, issuer: str, jti: str, expires_at: int) -> bool:
        """Record the token; False if it was used before (anywhere, unless the database is
        down: then in this pod). ``ServiceUnavailable`` when it cannot be checked."""
        key = hashlib.sha256(f"{issuer}|{jti}".encode("utf-8", "surrogatepass")).hexdigest()
        now = time.time()
        if time.monotonic() < self._down_until:
            return self._fallback(key, expires_at, now)

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
                "replay cache database unavailable (%s): %s for %g s",
                type(exc).__name__,
                "checking replays in this pod only" if self._pod else "refusing client tokens",
                DOWN_PAUSE,
            )
            return self._fallback(key, expires_at, now)

    def _fallback(self, key: str, expires_at: float, now: float) -> bool:
        if self._pod is None:
            raise _unavailable()
        return self._pod.first_use(key, expires_at, now)

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


class PodReplay:
    """Tokens seen while the database is down, in a SQLite file every worker process of the
    pod opens (the name is fixed when the app is made, before gunicorn forks its workers).

    The file lives in a folder only the service's user may enter, made when first needed
    (a folder of that name made by anyone else is refused). Its writes are not synced to
    disk: it is only needed while the pod runs. More than ``POD_LIMIT`` live tokens, or a
    file that cannot be used: ``ServiceUnavailable`` (refused, never waved through)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = (
            path
            or Path(tempfile.gettempdir())
            / (f"pgx-cds-replay-{os.getuid()}-{secrets.token_hex(8)}")
            / "seen.sqlite3"
        )
        self._reset()
        after_fork_in_child(self._reset)  # a connection never crosses a fork

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inserted = 0

    def _connect(self) -> sqlite3.Connection:
        folder = self.path.parent
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise OSError(f"{folder} is not a private folder of this user")
        conn = sqlite3.connect(
            self.path, timeout=1.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS seen (jti_hash TEXT PRIMARY KEY, expires_at REAL NOT NULL)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires_at)")
        return conn

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def first_use(self, key: str, expires_at: float, now: float) -> bool:
        try:
            with self._lock:
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # (a row past its expiry is not a replay: its token is refused anyway)
                    conn.execute(
                        "DELETE FROM seen WHERE jti_hash = ? AND expires_at < ?", (key, now)
                    )
                    try:
                        conn.execute("INSERT INTO seen VALUES (?, ?)", (key, expires_at))
                    except sqlite3.IntegrityError:
                        conn.execute("COMMIT")
                        return False
                    self._inserted += 1
                    if self._inserted % 1000 == 0:
                        conn.execute("DELETE FROM seen WHERE expires_at < ?", (now,))
                        live = conn.execute("SELECT count(*) FROM seen").fetchone()[0]
                        if live > POD_LIMIT:
                            conn.execute("ROLLBACK")
                            log.error("replay check: too many tokens while the database is down")
                            raise _unavailable()
                    conn.execute("COMMIT")
                    return True
                except sqlite3.Error:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, OSError) as exc:
            log.error("replay check: the pod's shared file cannot be used (%s)", type(exc).__name__)
            raise _unavailable() from None
