"""Two replicas behind a load balancer: two ``pgx-cds serve`` processes on different ports,
sharing one real PostgreSQL, started at the same moment (so both try to migrate at once)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
from builders import HASH_KEY
from cryptography.hazmat.primitives.asymmetric import ec
from migrating import upgrade_concurrently
from serving import ROOT, Service, clean_env, start_service, wait_ready, without_ids
from sqlalchemy import create_engine, inspect, text

from cds_service.store import schema

SANDBOX = ROOT / "sandbox" / "requests"
PUBLIC_URL = "https://cds.example.org"
HOOK = "/cds-services/pgx-order-select"
KEY = ec.generate_private_key(ec.SECP384R1())
PUBLIC_JWK = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))


class _Jwks(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"keys": [{**PUBLIC_JWK, "kid": "k1", "alg": "ES384"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jwks_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()


def _client_jwt(issuer: str, audience: str) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, KEY, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


@pytest.fixture
def replicas(postgres_url: str, jwks_url: str) -> Iterator[tuple[Service, Service]]:
    issuer = "https://ehr.example.org"
    env = clean_env(
        PGX_CDS_DATABASE_URL=postgres_url,
        PGX_CDS_PUBLIC_URL=PUBLIC_URL,
        PGX_CDS_TRUSTED_ISSUERS=json.dumps({issuer: jwks_url}),
        # authenticated: the FHIR servers the EHR's token may go to must be listed (issue 10)
        PGX_CDS_FHIR_SERVERS="https://ehr.example.org/fhir",
        # authenticated: the card log's key from outside the database (issue 26)
        PGX_CDS_HASH_KEY=HASH_KEY,
    )
    # both at once: the second must wait for the first's migration, not fail on it
    pair = (start_service(env, "--workers", "1", wait=False), start_service(env, "--workers", "1"))
    try:
        wait_ready(pair[0])
        yield pair
    finally:
        for service in pair:
            service.stop()


def _headers(audience_path: str) -> dict[str, str]:
    token = _client_jwt("https://ehr.example.org", PUBLIC_URL + audience_path)
    return {"Authorization": f"Bearer {token}"}


def test_two_replicas_answer_identically_and_share_feedback(replicas, postgres_url):
    a, b = replicas
    for path in sorted(SANDBOX.glob("order-select-*.json")):
        request = json.loads(path.read_text())
        answers = [
            requests.post(f"{s.url}{HOOK}", json=request, headers=_headers(HOOK), timeout=10)
            for s in (a, b)
        ]
        assert [r.status_code for r in answers] == [200, 200], path.name
        assert without_ids(answers[0].json()) == without_ids(answers[1].json()), path.name

    feedback = "/cds-services/pgx-order-select/feedback"
    for service, outcome in ((a, "overridden"), (b, "accepted")):
        item: dict[str, Any] = {
            "card": str(uuid.uuid4()),
            "outcome": outcome,
            "outcomeTimestamp": "2026-11-29T10:00:00Z",
        }
        if outcome == "accepted":
            item["acceptedSuggestions"] = [{"id": "s-1"}]
        stored = requests.post(
            f"{service.url}{feedback}",
            json={"feedback": [item]},
            headers=_headers(feedback),
            timeout=10,
        )
        assert stored.status_code == 200, stored.text
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        outcomes = conn.execute(text("SELECT outcome FROM feedback ORDER BY id")).scalars().all()
        assert outcomes == ["overridden", "accepted"]
        # one migration, recorded once, whichever replica ran it
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            schema.head()
        ]
    engine.dispose()
    for service in (a, b):
        ready = requests.get(f"{service.url}/readyz", timeout=5).json()
        assert ready["status"] == "ok" and ready["database"] == "ok"


def test_a_jwt_used_at_one_replica_is_refused_at_the_other(replicas):
    a, b = replicas
    request = json.loads((SANDBOX / "order-select-pgx-cyp2d6-pm-codeine.json").read_text())
    headers = _headers(HOOK)
    first = requests.post(f"{a.url}{HOOK}", json=request, headers=headers, timeout=10)
    assert first.status_code == 200, first.text
    again = requests.post(f"{b.url}{HOOK}", json=request, headers=headers, timeout=10)
    assert again.status_code == 401 and "replay" in again.json()["error"]


def test_a_database_made_before_migrations_is_stamped_not_broken(postgres_url):
    from migrating import create_pre_migration_schema

    from cds_service.store.feedback import FeedbackStore

    engine = create_engine(postgres_url)
    create_pre_migration_schema(engine)  # how earlier versions made the schema
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feedback (service_id, card_uuid, outcome, accepted_suggestions, "
                "outcome_timestamp, received_at) VALUES ('pgx-order-select', 'c-1', "
                "'overridden', '[]', now(), now())"
            )
        )
    assert schema.upgrade(engine) == schema.head()
    assert "alembic_version" in inspect(engine).get_table_names()
    store = FeedbackStore(postgres_url)
    assert [r["card_uuid"] for r in store.all()] == ["c-1"]
    engine.dispose()
    store.engine.dispose()


def test_replicas_migrating_at_the_same_moment_wait_for_each_other(postgres_url):
    """Without the advisory lock, concurrent CREATE TABLEs collide or block."""
    assert upgrade_concurrently(postgres_url) == [schema.head()] * 4
