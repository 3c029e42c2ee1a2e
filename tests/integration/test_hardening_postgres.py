"""Issue 10 against a real PostgreSQL: replays refused across replicas and restarts, NUL in
feedback, and a database that goes away (503 with Retry-After; hook calls keep working)."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import responses
from builders import APAP_CODEINE, HASH_KEY, hook_request, med_order, phenotype_obs, with_results
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, text

from cds_service.settings import Settings
from cds_service.web.app import create_app

ISSUER = "https://ehr.example.org"
JKU = "https://ehr.example.org/.well-known/jwks.json"
BASE = "http://localhost"
KEY = ec.generate_private_key(ec.SECP384R1())


def _jwks() -> dict:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
    return {"keys": [{**public, "kid": "k", "alg": "ES384"}]}


def _token(path: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": BASE + path,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, KEY, algorithm="ES384", headers={"kid": "k"})


def _secured(url: str):
    settings = Settings(
        database_url=url,
        trusted_issuers={ISSUER: JKU},
        public_url=BASE,
        fhir_servers="https://ehr.example.org/fhir",
        hash_key=HASH_KEY,
    )
    return create_app(settings).test_client()


FEEDBACK_PATH = "/cds-services/pgx-order-sign/feedback"


def _feedback(comment: str = "ok") -> dict:
    return {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "overrideReason": {"userComment": comment},
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
            }
        ]
    }


@responses.activate
def test_a_jwt_is_refused_at_a_second_replica_and_after_a_restart(postgres_url):
    responses.get(JKU, json=_jwks())
    replica_a, replica_b = _secured(postgres_url), _secured(postgres_url)
    tok = _token(FEEDBACK_PATH)
    headers = {"Authorization": f"Bearer {tok}"}
    assert replica_a.post(FEEDBACK_PATH, json=_feedback(), headers=headers).status_code == 200
    assert replica_b.post(FEEDBACK_PATH, json=_feedback(), headers=headers).status_code == 401
    restarted = _secured(postgres_url)
    assert restarted.post(FEEDBACK_PATH, json=_feedback(), headers=headers).status_code == 401


def test_nul_in_feedback_text_is_stored_without_it(postgres_url):
    client = create_app(Settings(database_url=postgres_url)).test_client()
    response = client.post(FEEDBACK_PATH, json=_feedback("before\x00after"))
    assert response.status_code == 200
    store = client.application.extensions["pgx"].store
    with store.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT override_comment FROM feedback ORDER BY id DESC LIMIT 1")
        ).scalar_one()
    assert stored == "beforeafter"


def test_a_database_that_goes_away_gives_503_and_hooks_keep_working(postgres_url):
    """The app's database goes away after start (its engine is pointed at a dead port: the
    cluster itself is shared by this module's tests)."""
    app = create_app(Settings(database_url=postgres_url))
    client = app.test_client()
    assert client.post(FEEDBACK_PATH, json=_feedback()).status_code == 200
    store = app.extensions["pgx"].store
    dead = postgres_url.rsplit(":", 1)[0] + ":1/postgres"
    store.engine = create_engine(dead, connect_args={"connect_timeout": 2})
    response = client.post(FEEDBACK_PATH, json=_feedback())
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch=with_results(phenotype_obs("Poor Metabolizer")),
    )
    hook = client.post("/cds-services/pgx-order-select", json=body)
    assert hook.status_code == 200 and hook.get_json()["cards"]


def _within(seconds: float, fn):
    """fn's result, or a failure if it has not returned after ``seconds`` (it would hang)."""
    import threading

    box: list = []
    worker = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(seconds)
    assert box, f"no answer within {seconds} s"
    return box[0], time.monotonic() - started


@responses.activate
def test_a_database_that_stops_answering_holds_no_call(postgres_url):
    """PostgreSQL keeps the connections open and never answers (a paused server, a lost
    network path): hook calls still answer with their cards, readiness says degraded within
    a probe's timeout, feedback answers 503; when it answers again, feedback is stored."""
    from blackhole import BlackHoleProxy
    from sqlalchemy.engine import make_url

    responses.get(JKU, json=_jwks())
    url = make_url(postgres_url)
    proxy = BlackHoleProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        client = _secured(url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
        body = hook_request(
            "order-select",
            [med_order(APAP_CODEINE)],
            prefetch=with_results(phenotype_obs("Poor Metabolizer")),
        )
        path = "/cds-services/pgx-order-select"

        def hook():
            return client.post(path, json=body, headers={"Authorization": f"Bearer {_token(path)}"})

        assert hook().status_code == 200
        proxy.pause()
        client.application.extensions["pgx"].store.card_log.forget_cache()
        answer, _ = _within(5, hook)  # the replay check and the override check both wait
        assert answer.status_code == 200 and answer.get_json()["cards"]
        ready, took = _within(5, lambda: client.get("/readyz"))
        assert ready.get_json()["status"] == "degraded" and took < 2  # the probe's timeout
        token = {"Authorization": f"Bearer {_token(FEEDBACK_PATH)}"}
        item = _feedback()
        refused, _ = _within(15, lambda: client.post(FEEDBACK_PATH, json=item, headers=token))
        assert refused.status_code == 503
        proxy.resume()
        # The work given up on drains first (until then new work is refused with 503 and a
        # Retry-After): the EHR's retries are stored within seconds of the database's return.
        deadline = time.monotonic() + 15
        while True:
            again = {"Authorization": f"Bearer {_token(FEEDBACK_PATH)}"}
            stored, _ = _within(
                15, lambda h=again: client.post(FEEDBACK_PATH, json=item, headers=h)
            )
            if stored.status_code != 503 or time.monotonic() > deadline:
                break
            assert int(stored.headers["Retry-After"]) > 0
            time.sleep(0.2)
        assert stored.status_code == 200
    finally:
        proxy.close()
