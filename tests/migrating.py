"""Run schema upgrades from several connections at the same moment (lock tests)."""

from __future__ import annotations

import threading

from sqlalchemy import create_engine

from cds_service.store import schema


def upgrade_concurrently(url: str, replicas: int = 4) -> list[object]:
    """What each of ``replicas`` engines got from ``schema.upgrade`` (a revision or an error),
    all started together."""
    engines = [create_engine(url) for _ in range(replicas)]
    barrier = threading.Barrier(replicas)
    results: list[object] = []

    def migrate(engine) -> None:
        barrier.wait()
        try:
            results.append(schema.upgrade(engine))
        except Exception as exc:  # collected and shown by the caller's assertion
            results.append(exc)

    threads = [threading.Thread(target=migrate, args=(e,), daemon=True) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()
    return results


def create_pre_migration_schema(engine) -> None:  # type: ignore[no-untyped-def]
    """The schema as ``metadata.create_all`` made it before migrations existed: the feedback
    table of revision 0001 and nothing else."""
    from sqlalchemy import MetaData, Table

    from cds_service.store.tables import feedback_table

    old = MetaData()
    Table(
        "feedback",
        old,
        *(c.copy() for c in feedback_table.columns if c.name not in ("card_known", "client")),
    )
    old.create_all(engine)


def upgrade_to(engine, revision: str) -> None:  # type: ignore[no-untyped-def]
    """Bring an empty database to ``revision`` (to test the migrations after it on data)."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(schema._config(conn), revision)
