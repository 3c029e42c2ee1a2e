"""Hook calls served on the worker's own loop (``web/gather.py``, ``core/inline.py``, issue 28).

A hook call that arrived whole is served on the loop, not handed to a request thread; one that
would wait on the network there (a FHIR read, an issuer's key set) is served again on a
thread. These run ``pgx-cds serve`` against a FHIR server and a key-set host of the test's own
(``hostile_server``): what the EHR and its users would see.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
import pytest
import requests
from builders import (
    APAP_CODEINE,
    HASH_KEY,
    NO_CHART,
    bundle,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)
from cryptography.hazmat.primitives.asymmetric import ec
from hostile_server import HostileServer, hostile_server, json_answer
from serving import Service, clean_env, start_service

HOOK = "/cds-services/pgx-order-select"
ISSUER = "https://ehr.example.org"
PUBLIC_URL = "https://cds.example.org"
KEY = ec.generate_private_key(ec.SECP384R1())
JWKS = {
    "keys": [
        {
            **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())),
            "kid": "k1",
            "alg": "ES384",
        }
    ]
}
RESULTS = bundle(phenotype_obs("Ultrarapid Metabolizer"))


def _fhir(server: HostileServer, delay: float = 0.0) -> str:
    """The FHIR server's routes: the patient's genomic results (an ultrarapid metabolizer),
    every other search empty; each answer ``delay`` seconds late."""
    results, empty = json_answer(RESULTS, delay=delay), json_answer(bundle(), delay=delay)

    def search(handler: BaseHTTPRequestHandler) -> None:
        genomic = handler.path.startswith("/fhir/Observation?") and "63895-7" not in handler.path
        (results if genomic else empty)(handler)

    server.routes["/fhir/"] = search
    return f"{server.base}/fhir"


def _without_prefetch(fhir_base: str, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    return hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        fhir_server=fhir_base,
        token="ehr-token",
        prefetch=prefetch,
    )


def _with_prefetch() -> dict[str, Any]:
    return hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch={**with_results(phenotype_obs("Ultrarapid Metabolizer")), **NO_CHART},
    )


def _indicators(answer: requests.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [card["indicator"] for card in answer.json()["cards"]]


def _client_jwt(key: Any = KEY, kid: str = "k1") -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": PUBLIC_URL + HOOK,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": kid, "typ": "JWT"})


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with hostile_server() as running:
        yield running


@pytest.fixture
def authenticated(server: HostileServer, tmp_path) -> Iterator[tuple[Service, str]]:
    """The service trusting one issuer (its key set on the test's server), which may send
    the EHR's token to the test's FHIR server."""
    server.routes["/jwks"] = json_answer(JWKS)
    fhir_base = _fhir(server)
    env = clean_env(
        PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'log.sqlite3'}",
        PGX_CDS_PUBLIC_URL=PUBLIC_URL,
        PGX_CDS_TRUSTED_ISSUERS=json.dumps({ISSUER: f"{server.base}/jwks"}),
        PGX_CDS_FHIR_SERVERS=fhir_base,
        PGX_CDS_HASH_KEY=HASH_KEY,
    )
    running = start_service(env, "--workers", "1")
    try:
        yield running, fhir_base
    finally:
        running.stop()


def test_a_client_jwt_call_that_reads_the_fhir_server_is_verified_once(authenticated, server):
    """Some prefetch, but not the genomic results: served on the loop until its first FHIR
    read, then on a thread from its first byte. The token's jti, recorded by the first
    attempt, is not refused as a replay by the second, and a real replay still is."""
    service, fhir_base = authenticated
    headers = {"Authorization": f"Bearer {_client_jwt()}"}
    body = _without_prefetch(fhir_base, prefetch=dict(NO_CHART))
    answer = requests.post(f"{service.url}{HOOK}", json=body, headers=headers, timeout=20)
    assert _indicators(answer) == ["critical"]
    assert any(p.startswith("/fhir/Observation?") for p in server.paths())  # read, on a thread
    again = requests.post(f"{service.url}{HOOK}", json=body, headers=headers, timeout=20)
    assert again.status_code == 401 and "replay" in again.json()["error"]
    assert "Bearer" not in service.log()


def test_a_key_set_fetched_for_a_call_does_not_hold_the_loop(authenticated, server):
    """A token signed with a key the service has not seen makes it fetch the issuer's key set
    again, from a slow host: on a request thread, so the worker's loop answers meanwhile
    (``/healthz``, answered on the loop), and the call is answered with the new key."""
    service, _ = authenticated
    first = requests.post(
        f"{service.url}{HOOK}",
        json=_with_prefetch(),
        headers={"Authorization": f"Bearer {_client_jwt()}"},
        timeout=20,
    )
    assert _indicators(first) == ["critical"]  # (the key set is cached now)
    rotated = ec.generate_private_key(ec.SECP384R1())
    new_key = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(rotated.public_key()))}
    server.routes["/jwks"] = json_answer(
        {"keys": [*JWKS["keys"], {**new_key, "kid": "k2", "alg": "ES384"}]}, delay=1.5
    )
    token = _client_jwt(rotated, "k2")
    calls: list[requests.Response] = []
    thread = threading.Thread(
        target=lambda: calls.append(
            requests.post(
                f"{service.url}{HOOK}",
                json=_with_prefetch(),
                headers={"Authorization": f"Bearer {token}"},
                timeout=20,
            )
        )
    )
    thread.start()
    deadline = time.monotonic() + 10
    while server.paths().count("/jwks") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200
    took = time.monotonic() - started
    thread.join(timeout=20)
    assert calls and _indicators(calls[0]) == ["critical"]
    assert took < 1.0, took  # not the key set host's 1.5 s


def test_calls_with_prefetch_are_answered_while_every_request_thread_waits(server, tmp_path):
    """One request thread, held by a call whose FHIR server is slow: a call that carries its
    data is answered meanwhile (on the loop), and the slow call still gets its card."""
    fhir_base = _fhir(server, delay=1.5)
    env = clean_env(
        PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'log.sqlite3'}",
        PGX_CDS_FHIR_BUDGET="10",
        PGX_CDS_FHIR_TIMEOUT="10",
    )
    service = start_service(env, "--workers", "1", "--threads", "1")
    try:
        answered: dict[str, float] = {}
        slow: list[requests.Response] = []

        def slow_call() -> None:
            slow.append(
                requests.post(f"{service.url}{HOOK}", json=_without_prefetch(fhir_base), timeout=30)
            )
            answered["slow"] = time.monotonic()

        thread = threading.Thread(target=slow_call)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.paths() and time.monotonic() < deadline:  # the slow call is reading
            time.sleep(0.01)
        quick = requests.post(f"{service.url}{HOOK}", json=_with_prefetch(), timeout=30)
        answered["quick"] = time.monotonic()
        thread.join(timeout=40)
        assert _indicators(quick) == ["critical"]
        assert slow and _indicators(slow[0]) == ["critical"]
        # the slow call's reads take at least 1.5 s after the quick call was sent
        assert answered["quick"] < answered["slow"] - 0.5, answered
    finally:
        service.stop()
