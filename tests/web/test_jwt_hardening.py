"""Issue 10, items 4 and 6: client JWT details and a key-set fetch within a budget."""

from __future__ import annotations

import threading
import time

import hostile_server as hostile
import jwt
import pytest
import responses
from builders import APAP_CODEINE, HASH_KEY, hook_request, med_order, phenotype_obs, with_results
from hostile_server import hostile_server, json_answer
from jwt_clients import (
    BASE,
    EC_KEY,
    ISSUER,
    JKU,
    SERVICE_URL,
    ec_jwks,
    make_client,
    post,
    rsa_jwks,
    token,
)
from pydantic import SecretStr

from cds_service.web import auth
from cds_service.web.app import create_app

# -- 6. JWT details -------------------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize("alg", ["RS256", "PS384", "RS512", "PS256"])
def test_the_algorithm_comes_from_the_key_not_the_token(settings, alg):
    responses.get(JKU, json=rsa_jwks("RS384"))
    response = post(make_client(settings), f"Bearer {token(alg=alg)}")
    assert response.status_code == 401
    assert "does not fit" in response.get_json()["error"]


@responses.activate
def test_the_keys_own_algorithm_is_accepted(settings):
    responses.get(JKU, json=rsa_jwks("RS384"))
    assert post(make_client(settings), f"Bearer {token(alg='RS384')}").status_code == 200


@responses.activate
def test_an_ec_key_without_alg_takes_its_curves_algorithm(settings):
    keys = ec_jwks()
    del keys["keys"][0]["alg"]
    responses.get(JKU, json=keys)
    client = make_client(settings)
    assert post(client, f"Bearer {token(alg='ES384', key=EC_KEY, kid='ec')}").status_code == 200


@responses.activate
@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"aud": [SERVICE_URL, "https://other.example.org/cds"]}, "other"),
        ({"exp": "4102444800"}, "numbers"),  # (a date in 2100: collected long before it runs)
        ({"iat": str(int(time.time()))}, "numbers"),
        ({"jti": ""}, "jti"),
        ({"jti": 5}, "JWT ID"),
    ],
)
def test_claim_details(settings, claims, problem):
    responses.get(JKU, json=rsa_jwks())
    response = post(make_client(settings), f"Bearer {token(**claims)}")
    assert response.status_code == 401
    assert problem in response.get_json()["error"]


@responses.activate
def test_an_aud_list_of_only_this_service_is_accepted(settings):
    responses.get(JKU, json=rsa_jwks())
    assert post(make_client(settings), f"Bearer {token(aud=[SERVICE_URL])}").status_code == 200


@responses.activate
@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_the_bearer_scheme_is_case_insensitive(settings, scheme):
    responses.get(JKU, json=rsa_jwks())
    assert post(make_client(settings), f"{scheme} {token()}").status_code == 200


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Bearer ", "Bearerx abc"])
def test_other_schemes_are_401(settings, value):
    assert post(make_client(settings), value).status_code == 401


# -- 4. key-set fetch: budget, size, single flight, never a 500 ----------------------------


def test_a_dripping_key_set_host_costs_at_most_the_budget(settings):
    with hostile_server() as server:
        server.routes["/jwks"] = hostile.drip_body
        client = make_client(settings, f"{server.base}/jwks")
        started = time.perf_counter()
        response = post(client, f"Bearer {token()}")
    assert response.status_code == 401
    assert time.perf_counter() - started < auth.JWKS_BUDGET + 1.0


def test_callers_wait_for_one_key_set_fetch_per_issuer(settings):
    """12 tokens naming an issuer whose key-set host drips: one fetch, not 12 in a row."""
    with hostile_server() as server:
        server.routes["/jwks"] = hostile.drip_body
        app_client = make_client(settings, f"{server.base}/jwks")
        statuses: list[int] = []

        def one() -> None:
            statuses.append(
                post(app_client.application.test_client(), f"Bearer {token()}").status_code
            )

        threads = [threading.Thread(target=one) for _ in range(12)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        took = time.perf_counter() - started
        hits = server.paths().count("/jwks")
    assert statuses == [401] * 12
    assert hits == 1
    assert took < 2 * auth.JWKS_BUDGET + 1.0


def test_while_one_caller_refreshes_others_use_the_cached_keys(settings):
    with hostile_server() as server:
        server.routes["/jwks"] = json_answer(rsa_jwks())
        client = make_client(settings, f"{server.base}/jwks")
        assert post(client, f"Bearer {token()}").status_code == 200
        verifier = client.application.extensions["pgx"]["verifier"]
        lock = verifier._fetching[f"{server.base}/jwks"]
        with lock:  # a refresh in progress elsewhere
            verifier._keys[f"{server.base}/jwks"] = (0.0, rsa_jwks())  # stale
            started = time.perf_counter()
            assert post(client, f"Bearer {token()}").status_code == 200
            assert time.perf_counter() - started < 0.5


@responses.activate
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"keys": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b"x" * (auth.JWKS_MAX_BYTES + 10),
        b'{"keys": [{"kid": "rsa", "kty": "RSA", "n": 5, "e": [], "alg": "RS384"}]}',
        b'{"keys": [{"kid": "rsa", "kty": "RSA", "alg": ["RS384"]}]}',
    ],
)
def test_a_hostile_key_set_is_a_401_not_a_500(settings, body):
    responses.get(JKU, body=body)
    response = post(make_client(settings), f"Bearer {token()}")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer " + "a" * 10_000,
        "Bearer a.b.c",
        "Bearer " + jwt.encode({"iss": ISSUER}, "k" * 32, algorithm="HS256"),
        "Bearer \x00\x01",
    ],
)
def test_garbage_tokens_are_401(settings, authorization):
    assert post(make_client(settings), authorization).status_code == 401


@responses.activate
def test_an_authenticated_caller_may_name_only_its_own_fhir_servers(settings):
    responses.get(JKU, json=rsa_jwks())
    own = "https://fhir.ehr.example.org/r4"
    app = create_app(
        settings.model_copy(
            update={
                "trusted_issuers": {ISSUER: JKU},
                "public_url": BASE,
                "issuer_fhir_servers": {ISSUER: [own]},
                "hash_key": SecretStr(HASH_KEY),
            }
        )
    )
    client = app.test_client()
    for server, expected in [("https://other.example.org/fhir", 403), (own, 200)]:
        body = hook_request(
            "order-select",
            [med_order(APAP_CODEINE)],
            prefetch=with_results(phenotype_obs("Poor Metabolizer")),
            fhir_server=server,
            token="t",
        )
        response = client.post(
            "/cds-services/pgx-order-select",
            json=body,
            headers={"Authorization": f"Bearer {token()}"},
        )
        assert response.status_code == expected, response.get_json()
