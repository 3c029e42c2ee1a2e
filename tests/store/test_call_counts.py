"""The calls and judged orders the report divides by: counted in memory, written in batches,
kept while the database is away."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, select

from cds_service.store import schema
from cds_service.store.call_counts import CallCounts
from cds_service.store.tables import hook_calls_table


def _engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    schema.prepare(engine, True)
    return engine


def _rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(
            (r.hour.hour, r.service_id, r.drug, r.calls, r.orders)
            for r in conn.execute(select(hook_calls_table))
        )


def test_calls_add_up_per_hour_service_and_drug(tmp_path):
    engine = _engine(tmp_path)
    counts = CallCounts(engine, background=False)
    nine = datetime(2026, 12, 1, 9, 15, tzinfo=UTC)
    counts.count("order-sign", "pgx-order-sign", 3, {"codeine": 1}, now=nine)
    counts.count("order-sign", "pgx-order-sign", 2, {"codeine": 2}, now=nine.replace(minute=59))
    counts.count("order-sign", "pgx-order-sign", 1, {}, now=nine.replace(hour=10))
    assert counts.flush()
    assert _rows(engine) == [
        (9, "pgx-order-sign", "", 2, 5),
        (9, "pgx-order-sign", "codeine", 2, 3),
        (10, "pgx-order-sign", "", 1, 1),
    ]
    assert counts.flush() and len(_rows(engine)) == 3  # nothing new: nothing written


def test_counts_are_kept_while_the_database_is_away_and_written_later(tmp_path):
    engine = _engine(tmp_path)
    counts = CallCounts(
        create_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}"), background=False
    )
    counts.count("order-select", "pgx-order-select", 1)
    assert not counts.flush()
    counts.count("order-select", "pgx-order-select", 4)
    counts.engine = engine  # the database is back
    assert counts.flush()
    ((_, _, _, calls, orders),) = _rows(engine)
    assert (calls, orders) == (2, 5)
