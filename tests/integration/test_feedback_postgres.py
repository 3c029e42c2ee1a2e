"""Feedback stored in a real PostgreSQL, through the same PGX_CDS_DATABASE_URL setting.

The test starts a throw-away PostgreSQL cluster from the server binaries on this machine
(as ``nobody`` when run as root, which PostgreSQL refuses) and skips with a message where
no PostgreSQL server is installed.
"""

from __future__ import annotations

from builders import feedback_body

from cds_service.settings import Settings
from cds_service.web.app import create_app


def test_feedback_is_stored_in_postgresql(postgres_url):
    settings = Settings(database_url=postgres_url)
    client = create_app(settings).test_client()
    body = feedback_body()
    assert client.post("/cds-services/pgx-order-sign/feedback", json=body).status_code == 200
    # a new app on the same database sees what the first stored
    rows = create_app(settings).extensions["pgx"].store.all()
    assert [(r["outcome"], r["accepted_suggestions"]) for r in rows[-2:]] == [
        ("accepted", ["s-1"]),
        ("overridden", []),
    ]
    assert rows[-1]["outcome_timestamp"].utcoffset() is not None
    assert client.get("/readyz").get_json()["database"] == "ok"


def test_postgresql_reads_the_latest_override_from_its_index(postgres_url):
    from sqlalchemy import create_engine, text

    from cds_service.store import schema
    from cds_service.store.card_log import LATEST_OVERRIDE

    engine = create_engine(postgres_url)
    schema.upgrade(engine)
    with engine.begin() as conn:
        # a log of many cards, a few overridden, so the planner has a choice to make
        conn.execute(
            text(
                "INSERT INTO card_log (card_uuid, issued_at, hook, service_id, drug, genes, "
                "phenotype, recommendation_id, indicator, knowledge_version, shown, "
                "patient_hash, order_hash, overridden_at) "
                "SELECT 'c' || i, now(), 'order-sign', 's', 'codeine', 'CYP2D6', 'UM', 'r', "
                "'critical', 'v', true, 'p', 'o' || i, "
                "CASE WHEN i % 100 = 0 THEN now() END FROM generate_series(1, 20000) AS i"
            )
        )
        conn.execute(text("ANALYZE card_log"))
        sql = str(LATEST_OVERRIDE.compile(engine))
        plan = " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {sql}")))
    engine.dispose()
    assert "ix_card_log_overridden_at" in plan, plan
