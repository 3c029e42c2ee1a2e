"""Issue 26 against a real PostgreSQL: migration 0005 on data (duplicate feedback deleted,
the unique index made, old card log rows marked as hashed with the stored key), one item
sent at once by five replicas stored once, feedback bound to the card's client, cards kept
while the database is away and written when it is back, and the hashing key out of it."""

from __future__ import annotations

import threading

from builders import (
    HASH_KEY,
    codeine_cards,
)
from migrating import upgrade_to
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from cds_service.settings import Settings
from cds_service.store import schema
from cds_service.store.feedback import FeedbackStore
from cds_service.web.app import create_app

ITEM = {
    "card": "c-1",
    "outcome": "overridden",
    "outcomeTimestamp": "2026-11-29T10:00:00Z",
    "overrideReason": {"reason": {"code": "no-alternative"}},
}


def test_migration_0005_on_postgresql_data(postgres_url):
    engine = create_engine(postgres_url)
    upgrade_to(engine, "0004")
    with engine.begin() as conn:
        for second in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO feedback (service_id, card_uuid, outcome, accepted_suggestions,"
                    " outcome_timestamp, received_at) VALUES ('s', 'c-1', 'overridden', '[]', "
                    f"'2026-11-29 10:00:00+00', '2026-11-29 10:00:0{second}+00')"
                )
            )
        conn.execute(
            text(
                "INSERT INTO card_log (card_uuid, issued_at, hook, service_id, drug, genes, "
                "phenotype, recommendation_id, indicator, knowledge_version, shown, "
                "patient_hash, order_hash) VALUES ('c-1', now(), 'h', 's', 'codeine', "
                "'CYP2D6', 'UM', 'r', 'critical', 'v', true, 'p', 'o')"
            )
        )
    assert schema.upgrade(engine) == schema.head()
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT extract(second FROM received_at) FROM feedback")).all()
        key_ids = conn.execute(text("SELECT key_id FROM card_log")).scalars().all()
        unique = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_feedback_item'")
        ).scalar_one()
    engine.dispose()
    assert [float(k[0]) for k in kept] == [1.0]
    assert key_ids == ["db"] and "UNIQUE" in unique


def test_one_item_sent_at_once_by_five_replicas_is_stored_once(postgres_url):
    """Each replica checked for the item before any had stored it: up to five copies."""
    create_app(Settings(database_url=postgres_url))  # (the schema)
    stores = [FeedbackStore(postgres_url) for _ in range(5)]
    barrier = threading.Barrier(5)
    counts: list[int] = []

    def send(store: FeedbackStore) -> None:
        barrier.wait()
        counts.append(store.store("pgx-order-select", {"feedback": [ITEM]}))

    threads = [threading.Thread(target=send, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(counts) == [0, 0, 0, 0, 1]
    assert len(stores[0].all()) == 1


def test_cards_issued_while_postgresql_is_away_are_written_when_it_is_back(postgres_url):
    app = create_app(Settings(database_url=postgres_url, hash_key=HASH_KEY))
    client = app.test_client()
    card_log = app.extensions["pgx"].store.card_log
    real = card_log.engine
    card_log.engine = create_engine(
        postgres_url.rsplit(":", 1)[0] + ":1/postgres", connect_args={"connect_timeout": 1}
    )
    issued = [codeine_cards(client, f"rx-{i}")[0]["uuid"] for i in range(3)]
    assert not card_log.flush(timeout=0.5)
    card_log.engine = real
    assert card_log.flush(timeout=15)
    assert [r["card_uuid"] for r in card_log.all()] == issued and card_log.lost == 0


def test_a_configured_key_leaves_no_key_in_postgresql(postgres_url):
    settings = Settings(database_url=postgres_url)
    testing = create_app(settings)  # testing mode: a key kept in the database
    codeine_cards(testing.test_client())
    assert testing.extensions["pgx"].store.card_log.flush(timeout=10)
    keyed = create_app(settings.model_copy(update={"hash_key": SecretStr(HASH_KEY)}))
    codeine_cards(keyed.test_client(), "rx-2")
    store = keyed.extensions["pgx"].store
    rows = store.card_log.all()
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM service_key")).scalar_one()
    assert stored == 0
    assert [r["key_id"] == "db" for r in rows] == [True, False]
