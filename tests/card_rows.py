"""Card log rows for the tests of how they are written (``store.many_rows``), on SQLite and
on PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from cds_service.store import many_rows
from cds_service.store.tables import card_log_table

LATER = datetime(2026, 12, 7, 15, 0, tzinfo=UTC) + timedelta(microseconds=7)


def card_log_row(uuid: str, **changes: Any) -> dict[str, Any]:
    """One card log row as the card log's writer inserts it (every column), ``changes``
    applied: the phenotype holds what text formats must escape (a backslash, a tab, a
    newline, a quote, JSON's own quote and escape, a null marker's text, letters beyond ASCII
    and beyond the Basic Multilingual Plane)."""
    row = {
        "card_uuid": uuid,
        "issued_at": datetime(2026, 12, 7, 13, 39, 31, 299016, tzinfo=UTC),
        "hook": "order-select",
        "service_id": "pgx-order-select",
        "drug": "codeine",
        "genes": "CYP2D6",
        "phenotype": (
            "CYP2D6 Ultrarapid Metabolizer; it's \\ \t tabbed\nand new-lined, "
            '"quoted" \\N \\u0041 \r é 𝔸'
        ),
        "recommendation_id": "cpic-codeine-cyp2d6-um",
        "indicator": "critical",
        "knowledge_version": "2026.1",
        "shown": False,
        "patient_hash": "a" * 64,
        "order_hash": "b" * 64,
        "overridden_at": None,
        "key_id": "k1",
        "client": None,
    }
    return row | changes


def stored_both_ways(engine: Engine, stored: Callable[[Engine], Any]) -> tuple[Any, Any]:
    """What ``stored`` reads after two rows (one with every optional column set) are written
    by SQLAlchemy's own insert, then by ``many_rows``: the two must be equal."""
    rows = [
        card_log_row("one"),
        card_log_row("two", shown=True, overridden_at=LATER, client="https://ehr"),
    ]
    with engine.begin() as conn:
        conn.execute(insert(card_log_table), rows)
    expected = stored(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM card_log"))
        many_rows.insert_rows(conn, card_log_table, rows)
    return expected, stored(engine)
