"""CDS client JWTs (CDS Hooks 2.0.1 §Trusting CDS Clients), when trusted issuers are set."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
import responses
from builders import APAP_CODEINE, HASH_KEY, hook_request, med_order, phenotype_obs, with_results
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr

from cds_service.web.app import create_app

ISSUER = "https://ehr.example.org"
JKU = "https://ehr.example.org/.well-known/jwks.json"
BASE = "http://localhost"
SERVICE_URL = f"{BASE}/cds-services/pgx-order-select"
KEY = ec.generate_private_key(ec.SECP384R1())
KID = "key-1"


def jwks(private_key=KEY, kid=KID) -> dict:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    return {"keys": [{**public, "kid": kid, "use": "sig", "alg": "ES384"}]}


def token(
    aud=SERVICE_URL,
    *,
    iss=ISSUER,
    kid=KID,
    key=KEY,
    alg="ES384",
    jku=JKU,
    exp_in=300,
    jti=None,
    drop=(),
) -> str:
    now = int(time.time())
    claims = {
        "iss": iss,
        "aud": aud,
        "exp": now + exp_in,
        "iat": now,
        "jti": jti or str(uuid.uuid4()),
    }
    for name in drop:
        claims.pop(name)
    headers = {"kid": kid, "typ": "JWT"}
    if jku:
        headers["jku"] = jku
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


@pytest.fixture
def secured(settings):
    app = create_app(
        settings.model_copy(
            update={
                "trusted_issuers": {ISSUER: JKU},
                "public_url": BASE,
                "fhir_servers": "https://ehr.example.org/fhir",
                "hash_key": SecretStr(HASH_KEY),
            }
        )
    )
    return app.test_client()


def body():
    return hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch=with_results(phenotype_obs("Poor Metabolizer")),
    )


def post(client, tok, path="/cds-services/pgx-order-select"):
    return client.post(path, json=body(), headers={"Authorization": f"Bearer {tok}"})


@responses.activate
def test_valid_jwt_is_accepted_on_every_endpoint(secured):
    responses.get(JKU, json=jwks())
    ok = secured.post(
        "/cds-services/pgx-order-select",
        json=body(),
        headers={"Authorization": f"Bearer {token()}"},
    )
    assert ok.status_code == 200 and ok.get_json()["cards"]
    discovery = secured.get(
        "/cds-services", headers={"Authorization": f"Bearer {token(f'{BASE}/cds-services')}"}
    )
    assert discovery.status_code == 200
    feedback_url = f"{SERVICE_URL}/feedback"
    fb = secured.post(
        "/cds-services/pgx-order-select/feedback",
        json={
            "feedback": [
                {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}
            ]
        },
        headers={"Authorization": f"Bearer {token(feedback_url)}"},
    )
    assert fb.status_code == 200
    assert len(responses.calls) == 1  # the key set is cached


@responses.activate
@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: None, "requires"),
        (lambda: "not-a-jwt", "not a JWT"),
        (lambda: token(aud=f"{BASE}/cds-services/pgx-order-sign"), "audience"),
        (lambda: token(iss="https://evil.example.com"), "not trusted"),
        (lambda: token(jku="https://evil.example.com/jwks.json"), "jku"),
        (lambda: token(exp_in=-600), "expired"),
        (lambda: token(drop=("jti",)), "jti"),
        (lambda: token(kid="unknown-kid"), "kid"),
        (lambda: token(key=ec.generate_private_key(ec.SECP384R1())), "Signature"),
        (
            lambda: jwt.encode(
                {"iss": ISSUER, "aud": SERVICE_URL},
                "s3cret-" * 8,
                algorithm="HS256",
                headers={"kid": KID},
            ),
            "HS256",
        ),
    ],
)
def test_invalid_jwts_are_401_with_a_reason(secured, make, problem):
    responses.get(JKU, json=jwks())
    value = make()
    headers = {"Authorization": f"Bearer {value}"} if value else {}
    response = secured.post("/cds-services/pgx-order-select", json=body(), headers=headers)
    assert response.status_code == 401
    assert problem.lower() in response.get_json()["error"].lower()


@responses.activate
def test_replayed_jti_is_rejected(secured):
    responses.get(JKU, json=jwks())
    same = token(jti="once")
    first = secured.post(
        "/cds-services/pgx-order-select", json=body(), headers={"Authorization": f"Bearer {same}"}
    )
    again = secured.post(
        "/cds-services/pgx-order-select", json=body(), headers={"Authorization": f"Bearer {same}"}
    )
    assert first.status_code == 200 and again.status_code == 401
    assert "replay" in again.get_json()["error"]


@responses.activate
def test_rotated_key_is_fetched_again(secured):
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(new_key.public_key()))
    responses.get(JKU, json=jwks())
    responses.get(JKU, json={"keys": [{**public, "kid": "key-2", "alg": "RS384"}]})
    assert post(secured, token()).status_code == 200
    rotated = token(kid="key-2", key=new_key, alg="RS384")
    assert post(secured, rotated).status_code == 200


def test_public_url_sets_the_expected_audience(settings):
    app = create_app(
        settings.model_copy(
            update={
                "trusted_issuers": {ISSUER: JKU},
                "public_url": "https://cds.example.org/",
                "fhir_servers": "https://ehr.example.org/fhir",
                "hash_key": SecretStr(HASH_KEY),
            }
        )
    )
    with responses.RequestsMock() as mocked:
        mocked.get(JKU, json=jwks())
        good = token(aud="https://cds.example.org/cds-services/pgx-order-select")
        response = app.test_client().post(
            "/cds-services/pgx-order-select",
            json=body(),
            headers={"Authorization": f"Bearer {good}"},
        )
    assert response.status_code == 200


def test_health_needs_no_jwt_and_preflight_passes(secured):
    assert secured.get("/healthz").status_code == 200
    assert secured.options("/cds-services/pgx-order-select").status_code == 204


def test_without_trusted_issuers_no_jwt_is_needed(client):
    assert client.post("/cds-services/pgx-order-select", json=body()).status_code == 200


@responses.activate
@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: token(exp_in=10 * 365 * 86400), "too long"),
        # an EC key's kid with an RSA algorithm: refused, not a crash
        (
            lambda: token(
                alg="RS256", key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
            ),
            "does not fit",
        ),
    ],
)
def test_more_invalid_jwts(secured, make, problem):
    responses.get(JKU, json=jwks())
    response = post(secured, make())
    assert response.status_code == 401
    assert problem in response.get_json()["error"]


@responses.activate
def test_failing_key_set_is_not_fetched_for_every_request(secured):
    """Without keys the calls are 503 (the caller's token may be fine), not 401."""
    responses.get(JKU, status=503)
    for _ in range(5):
        answer = post(secured, token())
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) <= 5
    assert len(responses.calls) == 1


@responses.activate
def test_key_set_without_a_keys_list(secured):
    responses.get(JKU, json={"keys": "nope"})
    assert post(secured, token()).status_code == 401


def test_trusted_issuers_need_a_public_url():
    from pydantic import ValidationError

    from cds_service.settings import Settings

    with pytest.raises(ValidationError, match="PGX_CDS_PUBLIC_URL"):
        Settings(trusted_issuers={ISSUER: JKU})


@responses.activate
def test_feedback_accepts_the_services_own_url_as_audience_as_epic_sends_it(secured):
    """Epic posts feedback to the service URL + /feedback with the aud configured for the
    service; the feedback URL itself stays accepted, another service's URL does not."""
    responses.get(JKU, json=jwks())
    item = {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}

    def feedback(aud: str, path: str = "/cds-services/pgx-order-select/feedback") -> int:
        answer = secured.post(
            path, json={"feedback": [item]}, headers={"Authorization": f"Bearer {token(aud)}"}
        )
        return answer.status_code

    assert feedback(SERVICE_URL) == 200
    assert feedback(f"{SERVICE_URL}/feedback") == 200
    assert feedback(f"{BASE}/cds-services/pgx-order-sign") == 401
    # a hook call still needs its own URL, not its feedback URL
    assert post(secured, token(f"{SERVICE_URL}/feedback")).status_code == 401
