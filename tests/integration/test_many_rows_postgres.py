"""The card log's rows copied into a real PostgreSQL (``store.many_rows``: ``COPY``, not one
``INSERT`` a row): stored exactly as SQLAlchemy's insert stores them, errors as SQLAlchemy
raises them, and a retried write still writes only what is missing."""

from __future__ import annotations

import pytest
from card_rows import LATER, card_log_row, stored_both_ways
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import IntegrityError

from cds_service.store import many_rows, schema
from cds_service.store.card_log import CardLog
from cds_service.store.tables import card_log_table


@pytest.fixture
def engine(postgres_url):
    engine = create_engine(postgres_url)
    schema.upgrade(engine)
    yield engine
    engine.dispose()


def _stored(engine) -> list[dict]:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT * FROM card_log ORDER BY id")).mappings()
        return [{k: v for k, v in row.items() if k != "id"} for row in found]


def test_rows_are_stored_as_sqlalchemy_stores_them(engine):
    """The same instants (with their offset: timestamptz), booleans, nulls, and texts holding
    what COPY's text format escapes (backslash, tab, newline)."""
    expected, got = stored_both_ways(engine, _stored)
    assert got == expected
    assert expected[1]["overridden_at"] == LATER
    assert expected[0]["phenotype"] == card_log_row("one")["phenotype"]


def test_the_rows_go_in_one_copy_not_one_insert_each(engine):
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, s, *a: statements.append(s))
    with engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, [card_log_row(f"r{i}") for i in range(300)])
    assert not [s for s in statements if s.startswith("INSERT")]
    assert len(_stored(engine)) == 300


def test_a_duplicate_is_sqlalchemys_integrity_error_and_nothing_is_written(engine):
    with engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, [card_log_row("kept")])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, [card_log_row("new"), card_log_row("kept")])
    assert [r["card_uuid"] for r in _stored(engine)] == ["kept"]
    with engine.begin() as conn:  # the pool's connection is still usable
        many_rows.insert_rows(conn, card_log_table, [card_log_row("after")])
    assert [r["card_uuid"] for r in _stored(engine)] == ["kept", "after"]


def test_a_retried_write_whose_commit_went_through_writes_only_the_others(engine):
    """What the card writer does when a commit reached the database but its answer did not."""
    card_log = CardLog(engine, b"k" * 32, background=False)
    rows = [card_log_row(f"card-{i}") for i in range(4)]
    assert card_log._write(rows[:2])
    assert card_log._write(rows)
    assert [r["card_uuid"] for r in _stored(engine)] == [f"card-{i}" for i in range(4)]
