"""Issue 10, items 4 and 6: client JWT details and a key-set fetch within a budget."""

from __future__ import annotations

import re
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
    assert response.status_code == 503  # no keys: unavailable, not the caller's fault
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
    assert statuses == [503] * 12
    assert hits == 1
    assert took < 2 * auth.JWKS_BUDGET + 1.0


def test_while_one_caller_refreshes_others_use_the_cached_keys(settings):
    with hostile_server() as server:
        server.routes["/jwks"] = json_answer(rsa_jwks())
        client = make_client(settings, f"{server.base}/jwks")
        assert post(client, f"Bearer {token()}").status_code == 200
        verifier = client.application.extensions["pgx"].verifier
        lock = verifier._fetching[f"{server.base}/jwks"]
        with lock:  # a refresh in progress elsewhere
            verifier._keys[f"{server.base}/jwks"] = auth._Cached(0.0, time.monotonic(), rsa_jwks())
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
def test_a_hostile_key_set_is_a_401_or_503_not_a_500(settings, body):
    """Unreadable (too deep, too large): no keys, 503; readable with unusable keys: 401."""
    responses.get(JKU, body=body)
    response = post(make_client(settings), f"Bearer {token()}")
    assert response.status_code == (401 if body.startswith(b'{"keys": [{') else 503)


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


# -- issue 26, item 4: key sets -------------------------------------------------------------


class _Clock:
    """``time.monotonic`` as the verifier sees it, moved on by the test."""

    def __init__(self, monkeypatch) -> None:
        self.offset = 0.0
        real = time.monotonic
        monkeypatch.setattr(auth.time, "monotonic", lambda: real() + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@responses.activate
def test_a_key_removed_from_the_key_set_stops_working_within_its_max_age(settings, monkeypatch):
    """Before: a removed key stayed valid for an hour (or until an unknown kid)."""
    clock = _Clock(monkeypatch)
    responses.get(JKU, json=rsa_jwks(), headers={"Cache-Control": "public, max-age=120"})
    client = make_client(settings)
    assert post(client, f"Bearer {token()}").status_code == 200
    responses.replace(responses.GET, JKU, json={"keys": []})  # the issuer removed the key
    clock.advance(90)
    assert post(client, f"Bearer {token()}").status_code == 200  # within max-age: cached
    clock.advance(60)
    refused = post(client, f"Bearer {token()}")
    assert refused.status_code == 401 and "kid" in refused.get_json()["error"]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, auth.JWKS_TTL),
        ("max-age=600", 600),
        ("max-age=0", auth.JWKS_MIN_TTL),  # not a fetch per call
        ("no-store", auth.JWKS_MIN_TTL),
        ("max-age=31536000", auth.JWKS_MAX_TTL),  # not a year
        ('max-age="nonsense"', auth.JWKS_TTL),
    ],
)
def test_cache_control_max_age_is_honoured_within_bounds(header, seconds):
    assert auth.max_age(header) == seconds
    assert 60 <= auth.JWKS_TTL <= 900  # the default is minutes


@responses.activate
def test_during_a_key_set_outage_stale_keys_live_a_bounded_time(settings, monkeypatch):
    """Before: a failed refresh renewed the old keys' time, so they were kept for ever."""
    clock = _Clock(monkeypatch)
    responses.get(JKU, json=rsa_jwks())
    client = make_client(settings)
    assert post(client, f"Bearer {token()}").status_code == 200
    responses.replace(responses.GET, JKU, status=503)  # the key-set host goes down
    clock.advance(auth.JWKS_TTL + 1)
    assert post(client, f"Bearer {token()}").status_code == 200  # stale keys, for a while
    for _ in range(int(auth.JWKS_STALE // auth.JWKS_RETRY)):
        clock.advance(auth.JWKS_RETRY)
        post(client, f"Bearer {token()}")  # refreshes that fail
    clock.advance(auth.JWKS_RETRY)
    gone = post(client, f"Bearer {token()}")
    assert gone.status_code == 503 and int(gone.headers["Retry-After"]) <= 5


@responses.activate
def test_a_replica_without_keys_answers_503_and_retries_quickly(settings, monkeypatch):
    clock = _Clock(monkeypatch)
    responses.get(JKU, status=500)
    client = make_client(settings)
    answer = post(client, f"Bearer {token()}")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
    responses.replace(responses.GET, JKU, json=rsa_jwks())  # the host is back
    clock.advance(auth.JWKS_RETRY_EMPTY + 0.1)  # seconds, not the 30 s with keys at hand
    assert post(client, f"Bearer {token()}").status_code == 200


@responses.activate
def test_readiness_waits_for_every_issuers_key_set(settings):
    responses.get(JKU, status=503)
    client = make_client(settings)
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.get_json()["status"] == "unavailable"
    responses.replace(responses.GET, JKU, json=rsa_jwks())
    verifier = client.application.extensions["pgx"].verifier
    verifier._failed.clear()  # (the quick retry has passed)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["key_sets"] == "ok"
    calls = len(responses.calls)
    assert post(client, f"Bearer {token()}").status_code == 200
    assert len(responses.calls) == calls  # fetched by readiness, not by the first call


def test_the_start_fetches_the_key_sets_before_the_workers_fork(settings, monkeypatch):
    from cds_service.cli import _open_app

    secured = settings.model_copy(
        update={
            "trusted_issuers": {ISSUER: JKU},
            "public_url": BASE,
            "fhir_servers": "https://ehr.example.org/fhir",
            "hash_key": SecretStr(HASH_KEY),
        }
    )
    with responses.RequestsMock() as mocked:
        mocked.get(JKU, json=rsa_jwks())
        app = _open_app(secured)
        assert len(mocked.calls) == 1
    assert JKU in app.extensions["pgx"].verifier._keys


@pytest.mark.parametrize(
    ("update", "says"),
    [
        ({"trusted_issuers": {ISSUER: "http://ehr.example.org/jwks"}}, "key set (JWKS) URL"),
        ({"fhir_servers": "http://ehr.example.org/fhir"}, "FHIR server"),
        ({"issuer_fhir_servers": {ISSUER: ["http://10.0.0.5/fhir"]}}, "FHIR server"),
    ],
)
def test_plain_http_is_refused_with_client_authentication(settings, update, says):
    from pydantic import ValidationError

    from cds_service.settings import Settings

    base = {
        "trusted_issuers": {ISSUER: JKU},
        "public_url": BASE,
        "fhir_servers": "https://ehr.example.org/fhir",
        "hash_key": HASH_KEY,
    }
    with pytest.raises(ValidationError, match=re.escape(says) + ".* is http://"):
        Settings(**{**base, **update})
    Settings(**{**base, **update, "allow_insecure_http": True})  # the explicit opt-in
    loopback = {
        "trusted_issuers": {ISSUER: "http://127.0.0.1:8900/jwks"},
        "fhir_servers": "http://localhost:8103/fhir, http://[::1]/fhir",
    }
    Settings(**{**base, **loopback})  # this machine: allowed
    with pytest.raises(ValueError, match="is http://"):
        create_app(settings.model_copy(update={**base, **update, "hash_key": SecretStr(HASH_KEY)}))


def test_the_insecure_opt_in_is_logged(settings, caplog):
    update = {
        "trusted_issuers": {ISSUER: "http://ehr.example.org/jwks"},
        "public_url": BASE,
        "fhir_servers": "https://ehr.example.org/fhir",
        "hash_key": SecretStr(HASH_KEY),
        "allow_insecure_http": True,
    }
    create_app(settings.model_copy(update=update))
    assert "PGX_CDS_ALLOW_INSECURE_HTTP" in caplog.text
