"""The card log: every card issued is recorded without patient identifiers in clear, feedback
links to it, and advice overridden with a reason is not shown again for the same order in the
same ordering session."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from builders import APAP_CODEINE, PATIENT, hook_request, med_order, phenotype_obs, with_results

UM = phenotype_obs("Ultrarapid Metabolizer")


def codeine(call, hook: str, order_id: str = "rx-1"):
    body = hook_request(
        hook, [med_order(APAP_CODEINE, order_id=order_id)], prefetch=with_results(UM)
    )
    status, answer = call(body)
    assert status == 200
    return answer["cards"]


def override(client, service: str, card_uuid: str, reason: str | None = "benefit-outweighs-risk"):
    item = {
        "card": card_uuid,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-29T10:00:00Z",
    }
    if reason:
        item["overrideReason"] = {
            "reason": {"code": reason, "system": "urn:pgx-pain-cds:override-reason"}
        }
    response = client.post(f"/cds-services/{service}/feedback", json={"feedback": [item]})
    assert response.status_code == 200


def test_every_card_is_logged_without_patient_identifiers(call, app):
    [card] = codeine(call, "order-select")
    assert not any(key.startswith("_") for key in card)  # the card log's record is not sent
    [row] = app.extensions["pgx"].store.card_log.all()
    assert row["card_uuid"] == card["uuid"]
    assert row["drug"] == "codeine" and row["genes"] == "CYP2D6"
    assert row["recommendation_id"] == "codeine-cyp2d6-um" and row["indicator"] == "critical"
    assert row["hook"] == "order-select" and row["service_id"] == "pgx-order-select"
    assert row["shown"] is True and row["knowledge_version"]
    assert PATIENT not in str(row) and len(row["patient_hash"]) == 64


def test_overridden_advice_is_not_shown_again_for_the_same_order(call, client):
    [card] = codeine(call, "order-select")
    override(client, "pgx-order-select", card["uuid"])
    assert codeine(call, "order-sign") == []  # same order, same session: not again
    assert len(codeine(call, "order-sign", order_id="rx-2")) == 1  # another order: shown


def test_override_without_a_reason_does_not_suppress(call, client):
    [card] = codeine(call, "order-select")
    override(client, "pgx-order-select", card["uuid"], reason=None)
    assert len(codeine(call, "order-sign")) == 1


def test_feedback_for_an_unknown_card_is_stored_and_flagged(call, client, app):
    [card] = codeine(call, "order-select")
    override(client, "pgx-order-select", card["uuid"])
    override(client, "pgx-order-select", "not-a-card-we-issued")
    rows = app.extensions["pgx"].store.all()
    assert [(r["card_uuid"], r["card_known"]) for r in rows] == [
        (card["uuid"], True),
        ("not-a-card-we-issued", False),
    ]


def test_repeated_feedback_is_acknowledged_and_stored_once(call, client, app):
    [card] = codeine(call, "order-select")
    item = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "s-1"}],
        "outcomeTimestamp": "2026-11-29T10:00:00+01:00",
    }
    same_instant = {**item, "outcomeTimestamp": "2026-11-29T09:00:00Z"}
    url = "/cds-services/pgx-order-select/feedback"
    first = client.post(url, json={"feedback": [item, item]})  # twice in one request
    retry = client.post(url, json={"feedback": [same_instant]})  # the client's retry
    assert (first.status_code, first.get_json()) == (200, {"stored": 1})
    assert (retry.status_code, retry.get_json()) == (200, {"stored": 0})
    later = client.post(url, json={"feedback": [{**item, "outcomeTimestamp": "2026-11-29T11:00Z"}]})
    assert later.get_json() == {"stored": 1}  # a new outcome time is a new item
    assert len(app.extensions["pgx"].store.all()) == 2


def test_the_latest_override_is_read_from_an_index_not_a_scan_of_the_log(tmp_path):
    """Asked on the hook path (once a second per process): with a year of cards in the log, a
    scan took about 150 ms with a million rows (bench/bench_card_log.py)."""
    from sqlalchemy import create_engine, text

    from cds_service.store import schema
    from cds_service.store.card_log import LATEST_OVERRIDE

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    schema.upgrade(engine)
    sql = str(LATEST_OVERRIDE.compile(engine))
    with engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "INDEX ix_card_log_overridden_at" in plan, plan


def test_the_card_log_keeps_only_the_indexes_its_queries_use(tmp_path):
    """Every index is written with every card: the log keeps those a query selects by (the
    override check's order hash, the report's and the retention's time, the latest
    override, feedback's card uuid), not one a column each. Migration 0008 dropped two; its
    downgrade brings them back."""
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from cds_service.store import schema

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    schema.upgrade(engine)

    def indexed() -> set[str]:
        return {i["column_names"][0] for i in inspect(engine).get_indexes("card_log")}

    unique = inspect(engine).get_unique_constraints("card_log")
    assert [u["column_names"] for u in unique] == [["card_uuid"]]  # (its own index)
    assert indexed() == {"issued_at", "order_hash", "overridden_at"}
    with engine.begin() as conn:
        command.downgrade(schema._config(conn), "0007")
    assert indexed() == {
        "issued_at",
        "order_hash",
        "overridden_at",
        "recommendation_id",
        "patient_hash",
    }


def _replica_b(settings):
    """A second replica on the same database (its own processes, caches and card writer)."""
    from cds_service.web.app import create_app

    return create_app(settings).test_client()


def test_an_override_sent_to_another_replica_before_the_card_was_written_still_counts(
    call, app, settings, monkeypatch
):
    """Replica A returns a card and queues it for its background writer; the clinician's
    override reaches replica B before A has written the card. When A's writer catches up,
    the override is linked: the advice is not shown again for that order, and the feedback
    is not counted as about an unknown card."""
    card_log = app.extensions["pgx"].store.card_log
    queued: list[list[dict]] = []
    monkeypatch.setattr(card_log, "_enqueue", queued.append)  # A's writer has not run yet
    [card] = codeine(call, "order-select")
    replica_b = _replica_b(settings)
    override(replica_b, "pgx-order-select", card["uuid"])
    [stored] = app.extensions["pgx"].store.all()
    assert stored["card_known"] is False  # B could not know the card yet

    for rows in queued:  # A's writer catches up
        card_log._write(rows)
    monkeypatch.undo()

    [row] = card_log.all()
    assert row["card_uuid"] == card["uuid"] and row["overridden_at"] is not None
    assert app.extensions["pgx"].store.all()[0]["card_known"] is True
    assert codeine(call, "order-sign") == []  # same order: not shown again on A
    b_sign = replica_b.post(
        "/cds-services/pgx-order-sign",
        json=hook_request(
            "order-sign", [med_order(APAP_CODEINE, order_id="rx-1")], prefetch=with_results(UM)
        ),
    )
    assert b_sign.get_json()["cards"] == []  # nor on B


def test_an_override_stored_after_its_card_is_linked_by_the_feedback_itself(call, app, settings):
    """The other order of events across replicas: the card is written, then the override
    arrives; the feedback store links it in its own transaction (no writer involved)."""
    [card] = codeine(call, "order-select")
    app.extensions["pgx"].store.card_log.flush()
    override(_replica_b(settings), "pgx-order-select", card["uuid"])
    [row] = app.extensions["pgx"].store.card_log.all()
    assert row["overridden_at"] is not None
    assert app.extensions["pgx"].store.all()[0]["card_known"] is True


def test_the_card_writer_writes_everything_queued_in_order_and_links_early_feedback(app, settings):
    """Under load the writer takes every call queued meanwhile in one transaction."""
    from cds_service.store.card_log import CardLog

    store = app.extensions["pgx"].store
    log = CardLog(store.engine, "k" * 32)
    rows = _card_rows(250)
    override(_replica_b(settings), "pgx-order-select", "card-7")  # before its card exists
    for i in range(0, 250, 2):
        log._enqueue(rows[i : i + 2])
    log.flush()
    written = log.all()
    assert [r["card_uuid"] for r in written] == [f"card-{i}" for i in range(250)]
    assert [r["card_uuid"] for r in written if r["overridden_at"]] == ["card-7"]


def test_a_card_written_while_its_override_was_being_stored_is_linked_by_the_feedback(
    call, app, settings, monkeypatch
):
    """The race's narrow middle: the feedback's transaction looked for the card before the
    card was committed, and the card's writer looked for feedback before the feedback was
    committed. The feedback store looks again after its commit."""
    from sqlalchemy import insert

    from cds_service.store.tables import card_log_table

    card_log = app.extensions["pgx"].store.card_log
    queued: list[list[dict]] = []
    monkeypatch.setattr(card_log, "_enqueue", queued.append)
    [card] = codeine(call, "order-select")
    replica_b = _replica_b(settings)
    store_b = replica_b.application.extensions["pgx"].store
    real_insert = store_b._insert

    def insert_then_card_committed(rows):
        stored = real_insert(rows)  # found no card
        with card_log.engine.begin() as conn:  # A's writer commits, its own check already done
            conn.execute(insert(card_log_table), [r for batch in queued for r in batch])
        return stored

    monkeypatch.setattr(store_b, "_insert", insert_then_card_committed)
    override(replica_b, "pgx-order-select", card["uuid"])
    [row] = card_log.all()
    assert row["overridden_at"] is not None
    assert app.extensions["pgx"].store.all()[0]["card_known"] is True


def _codeine_as(call, hook: str, user: str = "Practitioner/example", encounter: str | None = None):
    body = hook_request(hook, [med_order(APAP_CODEINE)], prefetch=with_results(UM))
    body["context"]["userId"] = user
    if encounter:
        body["context"]["encounterId"] = encounter
    status, answer = call(body)
    assert status == 200
    return answer["cards"]


def test_an_override_silences_the_advice_only_for_that_clinician_and_encounter(call, client):
    """The public sandbox gives every draft order the same id and many testers share its
    patients: one clinician's override must not hide a critical card from another."""
    [card] = _codeine_as(call, "order-select", encounter="enc-1")
    override(client, "pgx-order-select", card["uuid"])
    assert _codeine_as(call, "order-sign", encounter="enc-1") == []  # same session
    assert len(_codeine_as(call, "order-sign", user="Practitioner/other", encounter="enc-1")) == 1
    assert len(_codeine_as(call, "order-sign", encounter="enc-2")) == 1


def test_an_override_silences_the_advice_for_an_hour_not_for_the_day(call, client, app):
    from datetime import timedelta

    from sqlalchemy import update

    from cds_service.store.tables import card_log_table

    [card] = codeine(call, "order-select")
    override(client, "pgx-order-select", card["uuid"])
    assert codeine(call, "order-sign") == []
    store = app.extensions["pgx"].store
    store.card_log.flush()
    with store.engine.begin() as conn:  # the ordering session was two hours ago
        conn.execute(
            update(card_log_table).values(
                issued_at=datetime.now(UTC) - timedelta(hours=2),
                overridden_at=datetime.now(UTC) - timedelta(hours=2),
            )
        )
    store.card_log.forget_cache()
    assert len(codeine(call, "order-sign")) == 1


def test_a_slow_override_check_still_logs_the_cards(call, app, monkeypatch):
    """A check for earlier overrides that times out shows the cards (nothing to suppress is
    known) and must not cost the card log its rows: override rates are counted from them."""
    card_log = app.extensions["pgx"].store.card_log
    monkeypatch.setattr("cds_service.store.card_log.HOOK_DB_SECONDS", 0.05)
    real_latest = card_log._latest_override_at

    def slow_latest():
        time.sleep(0.3)
        return real_latest()

    monkeypatch.setattr(card_log, "_latest_override_at", slow_latest)
    [first] = codeine(call, "order-select")
    [second] = codeine(call, "order-sign")  # within the pause the timeout starts
    assert [r["card_uuid"] for r in card_log.all()] == [first["uuid"], second["uuid"]]


def test_the_cards_of_calls_made_close_together_are_written_at_once_and_flush_hurries(
    call, app, monkeypatch
):
    """The writer gathers the calls of ``WRITE_DELAY`` into one write (its database work is
    not paid at the start of every next call); a flush (feedback, shutdown) does not wait."""
    card_log = app.extensions["pgx"].store.card_log
    monkeypatch.setattr("cds_service.store.card_writer.WRITE_DELAY", 60.0)
    writes: list[int] = []
    real_write = card_log._write
    monkeypatch.setattr(
        card_log, "_write", lambda rows: (writes.append(len(rows)), real_write(rows))
    )
    for order in ("rx-1", "rx-2", "rx-3"):
        codeine(call, "order-select", order_id=order)
    assert card_log.flush(timeout=5)  # not after the minute
    assert writes == [3]


def _card_rows(n: int) -> list[dict]:
    """``n`` card log rows as the card log writes them."""
    return [
        {
            "card_uuid": f"card-{i}",
            "issued_at": datetime.now(UTC),
            "hook": "order-select",
            "service_id": "pgx-order-select",
            "drug": "codeine",
            "genes": "CYP2D6",
            "phenotype": "Ultrarapid Metabolizer",
            "recommendation_id": "codeine-cyp2d6-um",
            "indicator": "critical",
            "knowledge_version": "v",
            "shown": True,
            "patient_hash": "p" * 64,
            "order_hash": f"{i:064d}",
        }
        for i in range(n)
    ]


def test_a_sqlite_card_log_is_in_write_ahead_log_mode(app):
    """Readers (a hook call's override check) do not wait for the card log writers' commits,
    nor the writers for them."""
    from sqlalchemy import text

    engine = app.extensions["pgx"].store.engine
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_the_latest_override_is_asked_ahead_on_another_thread(app, monkeypatch):
    """Past most of its second the latest override is asked again on another thread, so that
    under steady traffic no hook call waits for that question."""
    import threading

    card_log = app.extensions["pgx"].store.card_log
    asked_on: list[str] = []
    real = card_log.engine.connect

    def connect():
        asked_on.append(threading.current_thread().name)
        return real()

    monkeypatch.setattr(card_log.engine, "connect", connect)
    stale = time.monotonic() - 0.8
    card_log._latest_override = (stale, None)
    assert card_log._latest_is_fresh()  # still within its second: answered at once
    deadline = time.monotonic() + 5
    while card_log._latest_override[0] == stale and time.monotonic() < deadline:
        time.sleep(0.01)
    assert card_log._latest_override[0] > stale  # asked again, ahead
    assert asked_on and threading.current_thread().name not in asked_on


def test_feedback_stored_while_the_latest_override_is_asked_ahead_wins(app, monkeypatch):
    """An answer asked before feedback was stored (``forget_cache``) is not kept: it could
    say no card was overridden when one just was."""
    card_log = app.extensions["pgx"].store.card_log
    real = card_log.engine.connect

    def connect():
        card_log.forget_cache()  # feedback arrives while the question is asked
        return real()

    monkeypatch.setattr(card_log.engine, "connect", connect)
    card_log._latest_override = (time.monotonic() - 0.8, None)
    card_log._latest_is_fresh()
    deadline = time.monotonic() + 5
    while card_log._refreshing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert card_log._latest_override == (0.0, None)  # forgotten: the next call asks
