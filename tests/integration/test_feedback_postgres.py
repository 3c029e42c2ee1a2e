"""Feedback stored in a real PostgreSQL, through the same PGX_CDS_DATABASE_URL setting.

The test starts a throw-away PostgreSQL cluster from the server binaries on this machine
(as ``nobody`` when run as root, which PostgreSQL refuses) and skips with a message where
no PostgreSQL server is installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service.app import create_app
from cds_service.settings import Settings


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql")
    # Not under pytest's tmp dir: ``nobody`` cannot enter root's private folders.
    root = Path(tempfile.mkdtemp(prefix="pgx-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        shutil.chown(root, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = root / "data", _free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "pgx"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -h 127.0.0.1 -k {root}"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield f"postgresql+psycopg://pgx@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def test_feedback_is_stored_in_postgresql(postgres_url):
    settings = Settings(database_url=postgres_url)
    client = create_app(settings).test_client()
    body = {
        "feedback": [
            {
                "card": "7f5c0ed6-0000-4000-8000-000000000001",
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "s-1"}],
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
            },
            {
                "card": "7f5c0ed6-0000-4000-8000-000000000002",
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "code": "no-alternative",
                        "system": "urn:pgx-pain-cds:override-reason",
                    }
                },
                "outcomeTimestamp": "2026-11-28T10:01:00+01:00",
            },
        ]
    }
    assert client.post("/cds-services/pgx-order-sign/feedback", json=body).status_code == 200
    # a new app on the same database sees what the first stored
    rows = create_app(settings).extensions["pgx"]["store"].all()
    assert [(r["outcome"], r["accepted_suggestions"]) for r in rows[-2:]] == [
        ("accepted", ["s-1"]),
        ("overridden", []),
    ]
    assert rows[-1]["outcome_timestamp"].utcoffset() is not None
    assert client.get("/readyz").get_json()["database"] == "ok"
