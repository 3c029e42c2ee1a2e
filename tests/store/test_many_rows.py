"""The card log's rows written a few statements at a time (``store.many_rows``): stored
exactly as SQLAlchemy's own insert stores them, all or nothing per transaction."""

from __future__ import annotations

import pytest
from card_rows import LATER, card_log_row, stored_both_ways
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import IntegrityError

from cds_service.store import many_rows
from cds_service.store.tables import card_log_table, metadata


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/log.db")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def _stored(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM card_log ORDER BY id"))]


def test_rows_are_stored_byte_for_byte_as_sqlalchemy_stores_them(engine):
    """Times in the same text (no offset: the override queries compare it as text), booleans
    as integers, nulls as nulls: a row reads back the same whichever way it was written."""
    expected, got = stored_both_ways(engine, lambda e: [r[1:] for r in _stored(e)])
    assert got == expected
    assert expected[0][1] == "2026-12-07 13:39:31.299016"
    with engine.connect() as conn:
        read = conn.execute(select(card_log_table.c.overridden_at, card_log_table.c.shown)).all()
    assert read[1] == (LATER.replace(tzinfo=None), True)


def test_more_rows_than_one_statement_holds_are_all_written_in_order(engine):
    count = many_rows.ROWS_A_STATEMENT * 2 + 3
    with engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, [card_log_row(f"c{i}") for i in range(count)])
    assert [r[1] for r in _stored(engine)] == [f"c{i}" for i in range(count)]


def test_a_duplicate_card_fails_the_transaction_and_writes_nothing(engine):
    """The writer relies on it: on IntegrityError it asks which rows are there and writes the
    rest, so a statement must not leave half its rows behind."""
    with engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, [card_log_row("kept")])
    rows = [card_log_row(f"n{i}") for i in range(many_rows.ROWS_A_STATEMENT + 5)] + [
        card_log_row("kept")
    ]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, rows)
    assert [r[1] for r in _stored(engine)] == ["kept"]


def test_rows_of_different_columns_are_refused_not_written_wrong(engine):
    """Not the card log's case (its rows all have the same keys), but never a value in the
    wrong column or a column silently left out (SQLAlchemy's insert refuses them too)."""
    rows = [card_log_row("a"), {k: v for k, v in card_log_row("b").items() if k != "client"}]
    with pytest.raises(ValueError, match="same columns"), engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, rows)
    assert _stored(engine) == []


def test_the_writer_thread_steps_the_database_once_per_statement_not_once_percard_log_row(engine):
    """What the change is for: each step lets the interpreter lock go and takes it back from
    the thread answering hook calls. And only a few statement sizes, so that the prepared
    statements SQLite keeps stay few (one for every count took some 20 MB a worker)."""
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    with engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, [card_log_row(f"r{i}") for i in range(300)])
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert [s.count("(?, ") for s in inserts] == [256, 16, 16, 4, 4, 4]
    statements.clear()
    for count in range(1, 300, 7):
        with engine.begin() as conn:
            rows = [card_log_row(f"b{count}-{i}") for i in range(count)]
            many_rows.insert_rows(conn, card_log_table, rows)
    assert len(set(statements)) <= len(many_rows.STATEMENT_SIZES)
    assert len(_stored(engine)) == 300 + sum(range(1, 300, 7))
