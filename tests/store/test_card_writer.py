"""Issue 26, item 10: cards issued while the database is down are kept (bounded) and written
when it is back; cards really lost are counted in a metric."""

from __future__ import annotations

from builders import codeine_cards
from hostile_server import closed_port
from sqlalchemy import create_engine

from cds_service.store import card_writer
from cds_service.web import metrics


def _uuid(client, order: str) -> str:
    [card] = codeine_cards(client, order, phenotype="Poor Metabolizer")
    return card["uuid"]


def _down(card_log):
    """Point the card log at a database that refuses connections; returns the real engine."""
    real = card_log.engine
    card_log.engine = create_engine(
        f"postgresql+psycopg://pgx@127.0.0.1:{closed_port()}/none",
        connect_args={"connect_timeout": 1},
    )
    return real


def test_cards_issued_while_the_database_is_down_are_written_when_it_is_back(client, app):
    card_log = app.extensions["pgx"].store.card_log
    before = _uuid(client, "rx-0")
    assert card_log.flush(timeout=5)
    real = _down(card_log)
    during = [_uuid(client, f"rx-{i}") for i in range(1, 6)]  # still answered with cards
    assert not card_log.flush(timeout=0.5)  # kept, not written, not dropped
    assert card_log._writer.waiting == 5
    card_log.engine = real  # the database is back
    assert card_log.flush(timeout=10)
    assert [r["card_uuid"] for r in card_log.all()] == [before, *during]
    assert card_log.lost == 0


def test_past_the_limit_the_oldest_are_dropped_and_counted(client, app, monkeypatch):
    monkeypatch.setattr(card_writer, "PENDING_LIMIT", 3)
    card_log = app.extensions["pgx"].store.card_log
    counted = metrics.CARDS_LOST._value.get()
    real = _down(card_log)
    issued = [_uuid(client, f"rx-{i}") for i in range(5)]
    card_log.flush(timeout=1.0)
    assert card_log.lost == 2
    assert metrics.CARDS_LOST._value.get() - counted == 2
    card_log.engine = real
    assert card_log.flush(timeout=10)
    assert [r["card_uuid"] for r in card_log.all()] == issued[2:]  # the newest three


def test_cards_still_waiting_at_exit_are_counted_as_lost(client, app, monkeypatch):
    monkeypatch.setattr(card_writer, "EXIT_SECONDS", 0.3)
    card_log = app.extensions["pgx"].store.card_log
    _down(card_log)
    _uuid(client, "rx-1")
    card_log._writer.close()  # (what atexit runs)
    assert card_log.lost == 1


def test_a_retried_write_whose_commit_went_through_is_not_refused_whole(app):
    """The commit reached the database but its answer did not: the retry finds some rows
    there already, and writes the others."""
    from test_card_log import _card_rows

    card_log = app.extensions["pgx"].store.card_log
    rows = _card_rows(4)
    assert card_log._write(rows[:2])
    assert card_log._write(rows)
    assert [r["card_uuid"] for r in card_log.all()] == [r["card_uuid"] for r in rows]


def test_the_writer_keeps_up_with_calls_faster_than_its_delay():
    """Calls queued faster than one batch each ``WRITE_DELAY`` are written at once, in
    transactions of ``CHUNK`` rows, not one batch of 100 calls per delay (at most 500 calls a
    second: fewer than one worker answers on the alerting path, so cards were lost)."""
    import threading
    import time

    written: list[int] = []
    done = threading.Event()
    calls = 3 * card_writer.CHUNK

    def write(rows: list[dict]) -> bool:
        written.append(len(rows))
        if sum(written) >= calls:
            done.set()
        return True

    writer = card_writer.CardWriter(write)
    started = time.monotonic()
    for i in range(calls):
        writer.put([{"card_uuid": f"card-{i}"}])
    assert done.wait(timeout=5), f"{sum(written)} of {calls} written after 5 s"
    assert time.monotonic() - started < 5
    assert writer.lost == 0
    assert max(written) <= card_writer.CHUNK
    assert len(written) <= 6  # a few transactions, not one per 100 calls
    writer.close()
