"""Checks that the FHIR test server harness (conftest.fhir_server) behaves like a FHIR R4 server."""

from __future__ import annotations

from typing import Any

import pytest
import requests

PATIENT_ID = "pgx-test-1"
LOINC = "http://loinc.org"
OBSERVATION_CODES = {"pgx-harness-obs-1": "53040-2", "pgx-harness-obs-2": "84413-4"}
TIMEOUT = 10


def _observation(obs_id: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }


def _transaction_bundle() -> dict[str, Any]:
    resources = [
        {
            "resourceType": "Patient",
            "id": PATIENT_ID,
            "name": [{"family": "Harness", "given": ["Pgx"]}],
        },
        *(_observation(obs_id, code) for obs_id, code in OBSERVATION_CODES.items()),
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def _get(fhir_server, url: str, **params: str) -> dict[str, Any]:
    if not url.startswith("http"):
        url = f"{fhir_server.base_url}/{url}"
    response = requests.get(url, params=params, headers=fhir_server.headers, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    return response.json()


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def _next_link(bundle: dict[str, Any]) -> str | None:
    return next((lk["url"] for lk in bundle.get("link", []) if lk["relation"] == "next"), None)


def _load(fhir_server) -> dict[str, Any]:
    """POST the transaction bundle (idempotent: PUTs with fixed ids) and return the response."""
    response = requests.post(
        fhir_server.base_url,
        json=_transaction_bundle(),
        headers={**fhir_server.headers, "Content-Type": "application/fhir+json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def loaded(fhir_server) -> dict[str, Any]:
    return _load(fhir_server)


def test_requests_without_valid_token_are_rejected(fhir_server) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}):
        response = requests.get(f"{fhir_server.base_url}/Patient", headers=headers, timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.json()["resourceType"] == "OperationOutcome"


def test_metadata(fhir_server) -> None:
    capability = _get(fhir_server, "metadata")
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"] == "4.0.1"


def test_transaction_bundle_loads(fhir_server, loaded) -> None:
    assert loaded["type"] == "transaction-response"
    statuses = [entry["response"]["status"] for entry in loaded["entry"]]
    assert all(status.startswith("20") for status in statuses), statuses
    patient = _get(fhir_server, f"Patient/{PATIENT_ID}")
    assert patient["name"][0]["family"] == "Harness"
    obs = _get(fhir_server, "Observation/pgx-harness-obs-1")
    assert obs["subject"]["reference"] == f"Patient/{PATIENT_ID}"


def test_loading_twice_keeps_one_copy(fhir_server, loaded) -> None:
    _load(fhir_server)

    patients = _get(fhir_server, "Patient", _id=PATIENT_ID)
    assert _ids(patients) == [PATIENT_ID]
    assert patients["total"] == 1
    observations = _get(fhir_server, "Observation", patient=PATIENT_ID)
    assert sorted(_ids(observations)) == sorted(OBSERVATION_CODES)
    count = _get(fhir_server, "Observation", patient=PATIENT_ID, _summary="count")
    assert count["total"] == 2
    assert "entry" not in count


def test_search_with_code_or_and_paging(fhir_server, loaded) -> None:
    codes = ",".join(f"{LOINC}|{code}" for code in OBSERVATION_CODES.values())
    first = _get(fhir_server, "Observation", patient=PATIENT_ID, code=codes, _count="1")
    assert len(_ids(first)) == 1
    assert first["total"] == 2
    next_url = _next_link(first)
    assert next_url and next_url.startswith(fhir_server.base_url + "/Observation?")

    # The next link is absolute and needs the token like any other request.
    unauthenticated = requests.get(next_url, timeout=TIMEOUT)
    assert unauthenticated.status_code == 401
    second = _get(fhir_server, next_url)
    assert len(_ids(second)) == 1
    assert _next_link(second) is None
    assert sorted(_ids(first) + _ids(second)) == sorted(OBSERVATION_CODES)


def test_search_by_subject_reference_and_single_code(fhir_server, loaded) -> None:
    by_subject = _get(fhir_server, "Observation", subject=f"Patient/{PATIENT_ID}")
    assert sorted(_ids(by_subject)) == sorted(OBSERVATION_CODES)
    by_code = _get(fhir_server, "Observation", patient=PATIENT_ID, code=f"{LOINC}|53040-2")
    assert _ids(by_code) == ["pgx-harness-obs-1"]
    assert by_code["entry"][0]["fullUrl"] == f"{fhir_server.base_url}/Observation/pgx-harness-obs-1"


def test_post_search_with_form_body(fhir_server, loaded) -> None:
    response = requests.post(
        f"{fhir_server.base_url}/Observation/_search",
        data={"subject": f"Patient/{PATIENT_ID}", "code": f"{LOINC}|84413-4"},
        headers=fhir_server.headers,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert _ids(response.json()) == ["pgx-harness-obs-2"]


def test_put_creates_then_updates(fhir_server) -> None:
    url = f"{fhir_server.base_url}/Patient/pgx-harness-put"
    headers = {**fhir_server.headers, "Content-Type": "application/fhir+json"}
    for family in ("First", "Second"):
        body = {"resourceType": "Patient", "id": "pgx-harness-put", "name": [{"family": family}]}
        response = requests.put(url, json=body, headers=headers, timeout=TIMEOUT)
        assert response.status_code in (200, 201), response.text
    assert _get(fhir_server, "Patient/pgx-harness-put")["name"][0]["family"] == "Second"
    assert _get(fhir_server, "Patient", _id="pgx-harness-put")["total"] == 1
