"""Issue 10, item 8: database faults are 503 with Retry-After, never 500; hook calls and
readiness carry on while the (feedback) database is down."""

from __future__ import annotations

import pytest
from builders import APAP_CODEINE, hook_request, med_order, phenotype_obs, with_results
from hostile_server import closed_port

from cds_service.web.app import create_app

FEEDBACK = "/cds-services/pgx-order-sign/feedback"
ITEM = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}


@pytest.fixture
def down(settings):
    """An app whose PostgreSQL is down from the start (nothing listens on its port)."""
    url = f"postgresql+psycopg://pgx@127.0.0.1:{closed_port()}/postgres"
    return create_app(settings.model_copy(update={"database_url": url})).test_client()


def test_the_service_starts_and_answers_hooks_with_the_database_down(down):
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch=with_results(phenotype_obs("Poor Metabolizer")),
    )
    response = down.post("/cds-services/pgx-order-select", json=body)
    assert response.status_code == 200 and len(response.get_json()["cards"]) == 1


def test_feedback_with_the_database_down_is_503_with_retry_after(down):
    response = down.post(FEEDBACK, json={"feedback": [ITEM]})
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "retry" in response.get_json()["error"]


def test_feedback_when_the_database_came_back_with_a_schema_we_cannot_use_is_503(down):
    """The database was down at start; it came back with a schema this version cannot use
    (e.g. a newer one): feedback is refused with 503, not a 500."""
    from cds_service.store.schema import SchemaError

    def wrong_schema() -> None:
        raise SchemaError("the database schema is newer than this version of the service")

    down.application.extensions["pgx"].store.prepare = wrong_schema
    response = down.post(FEEDBACK, json={"feedback": [ITEM]})
    assert response.status_code == 503 and "retry" in response.get_json()["error"]


def test_readiness_says_degraded_not_unavailable(down):
    response = down.get("/readyz")
    assert response.status_code == 200  # stays in the load balancer: hooks still work
    assert response.get_json()["status"] == "degraded"
    assert response.get_json()["database"] == "unavailable"


def test_readiness_when_all_is_well(client):
    assert client.get("/readyz").get_json()["status"] == "ok"


def test_nul_characters_are_not_stored(client):
    item = {**ITEM, "overrideReason": {"userComment": "a\x00b", "reason": {"code": "x\x00"}}}
    assert client.post(FEEDBACK, json={"feedback": [item]}).status_code == 200
    [row] = client.application.extensions["pgx"].store.all()
    assert row["override_comment"] == "ab" and row["override_reason_code"] == "x"


# -- issue 26, item 14: a database that answers but cannot write is "degraded" ----------------


def test_readiness_says_degraded_when_sqlite_refuses_writes(client):
    """The disk is full: SQLite still answers reads (SELECT 1 worked, readiness said "ok")
    while feedback answered 503."""
    from sqlalchemy import event, text

    store = client.application.extensions["pgx"].store
    assert client.get("/readyz").get_json()["status"] == "ok"
    with store.engine.connect() as conn:
        conn.exec_driver_sql("VACUUM")  # (no free pages left for the item: migrations free some)
        pages = conn.execute(text("PRAGMA page_count")).scalar_one()

    @event.listens_for(store.engine, "connect")
    def _full(dbapi_connection, _record) -> None:  # no page may be added: "disk is full"
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    store.engine.dispose()
    big = {**ITEM, "overrideReason": {"userComment": "x" * 4000}}
    refused = client.post(FEEDBACK, json={"feedback": [big]})
    assert refused.status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 200  # hooks still work: stays in the load balancer
    assert ready.get_json()["status"] == "degraded"
    assert ready.get_json()["database"] == "refuses writes"


def test_readiness_says_degraded_when_the_sqlite_disk_is_full(client, monkeypatch):
    import os

    from cds_service.store import feedback

    real = os.statvfs

    def full(path):
        found = real(path)
        return os.statvfs_result((*found[:4], 10, *found[5:]))  # 10 blocks free

    monkeypatch.setattr(feedback.os, "statvfs", full)
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "degraded" and ready["database"] == "refuses writes"
    assert "disk is full" in ready["degraded"][0]
