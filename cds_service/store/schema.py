"""The database schema: Alembic migrations (``cds_service/store/migrations``), applied under a lock.

Every replica may run ``upgrade`` at start (the default) or the site runs ``pgx-cds db upgrade``
as a separate step; either way the migration runs under a database-wide lock (PostgreSQL: an
advisory lock held for the migration's transaction; SQLite: a lock file beside the database), so
replicas starting together migrate one after the other and the later ones find nothing to do.

A database made before migrations existed (a ``feedback`` table, no ``alembic_version``) is
stamped at the first revision, then upgraded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import URL, Engine, make_url

log = logging.getLogger("cds_service.schema")

#: The revision that created the tables ``metadata.create_all`` used to make.
BASELINE = "0001"
#: Any number; the same in every replica (PostgreSQL advisory lock key: "pgx-cds" in ASCII).
ADVISORY_LOCK_KEY = 0x7067782D636473


class SchemaError(Exception):
    """The database schema is not what this version of the service needs."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "cds_service.store:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of the service knows."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def newer_than_this_version(found: str | None) -> bool:
    """Is ``found`` a revision this version does not know: one written by a newer version
    (the image was rolled back, or an older replica still runs beside newer ones)?"""
    if found is None:
        return False
    known = {r.revision for r in ScriptDirectory.from_config(_config()).walk_revisions()}
    return found not in known


def _refuse_newer(found: str | None) -> None:
    if newer_than_this_version(found):
        raise SchemaError(
            f"the database schema (revision {found}) is newer than this version of the service "
            f"(which knows revisions up to {head()}): deploy the newer version, or restore "
            "the database from before the upgrade"
        )


def current(engine: Engine) -> str | None:
    """The database's revision (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the schema to the newest revision under the migration lock; returns it."""
    target = head()
    found = current(engine)
    if found == target:  # the common case: nothing to do, no lock needed
        return target
    _refuse_newer(found)
    with _file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Held until this transaction ends: the other replicas wait here.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        config = _config(conn)
        tables = inspect(conn)
        if not tables.has_table("alembic_version") and tables.has_table("feedback"):
            log.info("database made before migrations: stamping revision %s", BASELINE)
            command.stamp(config, BASELINE)
        before = MigrationContext.configure(conn).get_current_revision()
        _refuse_newer(before)  # a newer version may have migrated while we waited
        command.upgrade(config, "head")
    if before != target:
        log.info("database schema upgraded from %s to %s", before or "empty", target)
    return target


def prepare(engine: Engine, migrate: bool) -> None:
    """What the service does before using the database: bring the schema up to date
    (``PGX_CDS_MIGRATE_ON_START``), or refuse an older one when the site migrates itself."""
    if migrate:
        upgrade(engine)
    else:
        require_current(engine)


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite database URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def require_current(engine: Engine) -> None:
    """For sites that migrate as a separate step: refuse to run on an older (or a newer)
    schema."""
    found, needed = current(engine), head()
    _refuse_newer(found)
    if found != needed:
        raise SchemaError(
            f"the database schema is at revision {found or 'none'}, this version needs "
            f"{needed}: run `pgx-cds db upgrade` (or set PGX_CDS_MIGRATE_ON_START=true)"
        )


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """SQLite has no advisory locks: an exclusive lock on a file beside the database."""
    database = sqlite_file(engine.url)
    if database is None:
        yield
        return
    import fcntl  # POSIX only, like the production server

    lock_path = database.with_name(database.name + ".migrate-lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
