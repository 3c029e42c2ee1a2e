"""The card log's rows written into a real PostgreSQL (``store.many_rows``: one JSON array
in one statement, not one ``INSERT`` a row; ``COPY`` where JSON cannot carry a value as it
is): stored exactly as SQLAlchemy's insert stores them, errors as SQLAlchemy raises them,
and a retried write still writes only what is missing."""

from __future__ import annotations

import pytest
from card_rows import LATER, card_log_row, stored_both_ways
from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.exc import IntegrityError, StatementError

from cds_service.store import many_rows, schema
from cds_service.store.card_log import CardLog
from cds_service.store.tables import card_log_table, feedback_table


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


def test_the_rows_go_in_one_statement_with_one_parameter_in_their_order(engine):
    statements: list[tuple[str, object]] = []
    event.listen(
        engine, "before_cursor_execute", lambda c, cur, s, p, *a: statements.append((s, p))
    )
    with engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, [card_log_row(f"r{i}") for i in range(300)])
    [(statement, parameters)] = [s for s in statements if "card_log" in s[0]]
    assert "json_populate_recordset" in statement and len(parameters) == 1  # type: ignore[arg-type]
    assert [r["card_uuid"] for r in _stored(engine)] == [f"r{i}" for i in range(300)]


@pytest.fixture
def copied(monkeypatch) -> list[int]:
    """The sizes of the batches that went by ``COPY``."""
    sizes: list[int] = []
    real_copy = many_rows._copy
    monkeypatch.setattr(
        many_rows,
        "_copy",
        lambda conn, t, n, rows: sizes.append(len(rows)) or real_copy(conn, t, n, rows),
    )
    return sizes


def test_rows_json_cannot_carry_as_they_are_still_go_by_copy(engine, copied, monkeypatch):
    """A column whose type processes its value (feedback's JSON column) is never sent as
    JSON text; nor is a value orjson has no type for. Both are copied, stored the same."""
    monkeypatch.setattr(many_rows.orjson, "dumps", _refuse)
    expected, got = stored_both_ways(engine, _stored)
    assert got == expected and copied == [2]


def test_a_column_whose_type_processes_its_value_goes_by_copy(engine, copied):
    """Feedback's accepted suggestions (a JSON column): stored as SQLAlchemy's JSON type
    stores them, not as whatever the JSON array would make of them."""
    item = {
        "service_id": "pgx-order-sign",
        "card_uuid": "card-1",
        "outcome": "accepted",
        "accepted_suggestions": [{"id": "s-1"}],
        "outcome_timestamp": LATER,
        "received_at": LATER,
        "card_known": True,
    }
    with engine.begin() as conn:
        many_rows.insert_rows(conn, feedback_table, [item])
        stored = conn.execute(text("SELECT accepted_suggestions::text FROM feedback")).scalar()
    assert copied == [1] and stored == '[{"id": "s-1"}]'


def _refuse(value: object) -> bytes:
    raise many_rows.orjson.JSONEncodeError("not this time")


def test_a_flag_that_is_not_one_is_refused_as_sqlalchemy_refuses_it(engine):
    with pytest.raises((TypeError, StatementError)), engine.begin() as conn:
        conn.execute(insert(card_log_table), [card_log_row("sa", shown="yes")])
    with pytest.raises(TypeError), engine.begin() as conn:
        many_rows.insert_rows(conn, card_log_table, [card_log_row("ours", shown="yes")])
    assert _stored(engine) == []


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


def test_a_card_write_is_two_statements_each_committed_by_itself(engine):
    """The writer's round trips to the server are what hold a hook call up (each hands the
    interpreter lock back and forth): the insert and the look for early feedback, no
    ``BEGIN``/``COMMIT`` around either."""
    seen: list[tuple[str, bool]] = []

    def statement(conn, cursor, sql, *args):
        seen.append((sql.split()[0], conn.connection.driver_connection.autocommit))

    card_log = CardLog(engine, b"k" * 32, background=False)
    assert card_log._write([card_log_row("first")])  # (the first also drops a stored key)
    event.listen(engine, "before_cursor_execute", statement)
    assert card_log._write([card_log_row(f"card-{i}") for i in range(200)])
    assert seen == [("INSERT", True), ("SELECT", True)]
    assert len(_stored(engine)) == 201
    with engine.connect() as conn:  # the pool's connection is back to transactions (feedback's)
        assert conn.connection.driver_connection.autocommit is False
        assert engine.pool.checkedin() == 0  # (the one the writer used)
