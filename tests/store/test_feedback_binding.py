"""Issue 26, items 5 and 12: feedback is bound to the client the card was issued to, capped and
rate-limited per client, and one item is stored once even when sent concurrently."""

from __future__ import annotations

import json
import threading
import time
import uuid

import jwt
import pytest
import responses
from builders import APAP_CODEINE, HASH_KEY, hook_request, med_order, phenotype_obs, with_results
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from cds_service.store import feedback as feedback_module
from cds_service.store.feedback import FeedbackStore
from cds_service.store.tables import feedback_table
from cds_service.web.app import create_app

BASE = "http://localhost"
ISSUERS = {
    name: (f"https://{name}.example.org", f"https://{name}.example.org/jwks.json")
    for name in ("ehr-a", "ehr-b")
}
KEYS = {name: ec.generate_private_key(ec.SECP384R1()) for name in ISSUERS}
SIGN = "/cds-services/pgx-order-sign"
SELECT = "/cds-services/pgx-order-select"
FEEDBACK = f"{SELECT}/feedback"


def _jwks(name: str) -> dict:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEYS[name].public_key()))
    return {"keys": [{**public, "kid": name, "alg": "ES384"}]}


def _as(name: str, path: str) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "iss": ISSUERS[name][0],
        "aud": BASE + path,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    token = jwt.encode(claims, KEYS[name], algorithm="ES384", headers={"kid": name})
    return {"Authorization": f"Bearer {token}"}


def _secured(settings, **more):
    update = {
        "trusted_issuers": dict(ISSUERS.values()),
        "public_url": BASE,
        "fhir_servers": "https://ehr.example.org/fhir",
        "hash_key": SecretStr(HASH_KEY),
        **more,
    }
    return create_app(settings.model_copy(update=update)).test_client()


def _codeine(client, name: str, path: str = SELECT) -> list[dict]:
    body = hook_request(
        "order-select" if path == SELECT else "order-sign",
        [med_order(APAP_CODEINE, order_id="rx-1")],
        prefetch=with_results(phenotype_obs("Ultrarapid Metabolizer")),
    )
    answer = client.post(path, json=body, headers=_as(name, path))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["cards"]


def _override(card: str, when: str = "2026-11-29T10:00:00Z") -> dict:
    return {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": when,
        "overrideReason": {"reason": {"code": "no-alternative"}},
    }


def _send(client, name: str, *items: dict):
    return client.post(FEEDBACK, json={"feedback": list(items)}, headers=_as(name, FEEDBACK))


@pytest.fixture
def keysets():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        for name, (_, jwks_url) in ISSUERS.items():
            mocked.get(jwks_url, json=_jwks(name))
        yield mocked


def test_another_client_cannot_override_a_card_it_was_not_issued(settings, keysets):
    """Issuer B overriding issuer A's card would suppress that advice for A's order."""
    client = _secured(settings)
    [card] = _codeine(client, "ehr-a")
    refused = _send(client, "ehr-b", _override(card["uuid"]))
    assert refused.status_code == 403 and "another client" in refused.get_json()["error"]
    store = client.application.extensions["pgx"].store
    assert store.all() == []  # nothing stored
    assert len(_codeine(client, "ehr-a", SIGN)) == 1  # the advice is still shown to A
    assert _send(client, "ehr-a", _override(card["uuid"])).status_code == 200
    assert _codeine(client, "ehr-a", SIGN) == []  # A's own override counts
    [row] = store.all()
    assert row["client"] == ISSUERS["ehr-a"][0]
    assert store.card_log.all()[0]["client"] == ISSUERS["ehr-a"][0]


def test_another_clients_feedback_sent_before_the_card_was_written_is_never_linked(
    settings, keysets, monkeypatch
):
    """The link-later path (feedback reached a replica before the card was written) checks
    the client too: B's early override stays about an unknown card and suppresses nothing."""
    client = _secured(settings)
    card_log = client.application.extensions["pgx"].store.card_log
    queued: list[list[dict]] = []
    monkeypatch.setattr(card_log, "_enqueue", queued.append)  # the writer has not run yet
    [card] = _codeine(client, "ehr-a")
    assert _send(client, "ehr-b", _override(card["uuid"])).status_code == 200  # unknown yet
    for rows in queued:
        card_log._write(rows)
    monkeypatch.undo()
    [row] = card_log.all()
    assert row["overridden_at"] is None
    assert client.application.extensions["pgx"].store.all()[0]["card_known"] is False
    assert len(_codeine(client, "ehr-a", SIGN)) == 1


def test_a_feedback_request_holds_at_most_50_items(client):
    items = [_override(f"card-{i}") for i in range(51)]
    response = client.post(FEEDBACK, json={"feedback": items})
    assert response.status_code == 400 and "feedback" in str(response.get_json())
    assert client.post(FEEDBACK, json={"feedback": items[:50]}).status_code == 200


def test_feedback_is_rate_limited_per_client_across_replicas(settings, keysets):
    """Counted in the database: two replicas share one client's budget; the other client
    has its own."""
    replica_a = _secured(settings, feedback_per_minute=10, feedback_unknown_per_hour=1000)
    replica_b = _secured(settings, feedback_per_minute=10, feedback_unknown_per_hour=1000)
    assert _send(replica_a, "ehr-a", *[_override(f"a-{i}") for i in range(6)]).status_code == 200
    assert _send(replica_b, "ehr-a", *[_override(f"b-{i}") for i in range(4)]).status_code == 200
    refused = _send(replica_b, "ehr-a", _override("one-too-many"))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert _send(replica_a, "ehr-b", _override("other-client")).status_code == 200
    assert len(replica_a.application.extensions["pgx"].store.all()) == 11


def test_feedback_about_unknown_cards_is_counted_and_capped(settings):
    client = create_app(settings.model_copy(update={"feedback_unknown_per_hour": 3})).test_client()
    sent = client.post(FEEDBACK, json={"feedback": [_override(f"never-{i}") for i in range(3)]})
    assert sent.status_code == 200
    refused = client.post(FEEDBACK, json={"feedback": [_override("never-4")]})
    assert refused.status_code == 429 and "not issued" in refused.get_json()["error"]
    rows = client.application.extensions["pgx"].store.all()
    assert [r["card_known"] for r in rows] == [False] * 3
    # feedback on cards the service did issue is not held back by the cap
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch=with_results(phenotype_obs("Ultrarapid Metabolizer")),
    )
    [card] = client.post(SELECT, json=body).get_json()["cards"]
    assert client.post(FEEDBACK, json={"feedback": [_override(card["uuid"])]}).status_code == 200


# -- item 12: one item, one row ----------------------------------------------------------------


def test_the_database_refuses_a_second_row_for_one_item(app):
    store = app.extensions["pgx"].store
    row = {
        "service_id": "pgx-order-select",
        "card_uuid": "c",
        "outcome": "overridden",
        "accepted_suggestions": [],
        "outcome_timestamp": feedback_module.as_utc(
            feedback_module.datetime(2026, 11, 29, 10, tzinfo=feedback_module.UTC)
        ),
        "received_at": feedback_module.datetime.now(feedback_module.UTC),
    }
    with store.engine.begin() as conn:
        conn.execute(insert(feedback_table), row)
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(feedback_table), row)


def test_one_item_sent_at_once_by_five_replicas_is_stored_once(settings):
    """Every replica checked for the item before any had stored it: each stored a copy."""
    stores = [FeedbackStore(settings.database_url) for _ in range(5)]
    create_app(settings)  # (the schema)
    barrier = threading.Barrier(5)
    counts: list[int] = []

    def send(store: FeedbackStore) -> None:
        barrier.wait()
        for _ in range(20):  # SQLite may answer "locked" under the race: retry as a client
            try:
                counts.append(store.store("pgx-order-select", {"feedback": [_override("c")]}))
                return
            except feedback_module.ServiceUnavailable:
                time.sleep(0.05)

    threads = [threading.Thread(target=send, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(counts) == [0, 0, 0, 0, 1]
    assert len(stores[0].all()) == 1


def test_the_migration_deletes_duplicates_before_making_the_index(tmp_path):
    from migrating import upgrade_to
    from sqlalchemy import create_engine

    from cds_service.store import schema

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    upgrade_to(engine, "0004")
    with engine.begin() as conn:
        for received in ("10:00:01", "10:00:02", "10:00:03"):
            conn.execute(
                text(
                    "INSERT INTO feedback (service_id, card_uuid, outcome, accepted_suggestions,"
                    " outcome_timestamp, received_at) VALUES ('s', 'c-1', 'overridden', '[]', "
                    f"'2026-11-29 10:00:00.000000', '2026-11-29 {received}.000000')"
                )
            )
        conn.execute(
            text(
                "INSERT INTO card_log (card_uuid, issued_at, hook, service_id, drug, genes, "
                "phenotype, recommendation_id, indicator, knowledge_version, shown, "
                "patient_hash, order_hash) VALUES ('c-1', '2026-11-29 09:00:00.000000', 'h', "
                "'s', 'codeine', 'CYP2D6', 'UM', 'r', 'critical', 'v', 1, 'p', 'o')"
            )
        )
    assert schema.upgrade(engine) == schema.head()
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT received_at FROM feedback")).scalars().all()
        key_ids = conn.execute(text("SELECT key_id FROM card_log")).scalars().all()
    assert kept == ["2026-11-29 10:00:01.000000"]  # the first one stored
    assert key_ids == ["db"]
