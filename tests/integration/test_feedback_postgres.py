"""Feedback stored in a real PostgreSQL, through the same PGX_CDS_DATABASE_URL setting.

The test starts a throw-away PostgreSQL cluster from the server binaries on this machine
(as ``nobody`` when run as root, which PostgreSQL refuses) and skips with a message where
no PostgreSQL server is installed.
"""

from __future__ import annotations

from builders import feedback_body

from cds_service.app import create_app
from cds_service.settings import Settings


def test_feedback_is_stored_in_postgresql(postgres_url):
    settings = Settings(database_url=postgres_url)
    client = create_app(settings).test_client()
    body = feedback_body()
    assert client.post("/cds-services/pgx-order-sign/feedback", json=body).status_code == 200
    # a new app on the same database sees what the first stored
    rows = create_app(settings).extensions["pgx"]["store"].all()
    assert [(r["outcome"], r["accepted_suggestions"]) for r in rows[-2:]] == [
        ("accepted", ["s-1"]),
        ("overridden", []),
    ]
    assert rows[-1]["outcome_timestamp"].utcoffset() is not None
    assert client.get("/readyz").get_json()["database"] == "ok"
