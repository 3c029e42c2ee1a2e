"""Every example request in sandbox/requests gives the card the tester guide promises, and
the sandbox patient bundles are well-formed FHIR R4 transactions."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = ROOT / "sandbox" / "requests"
PATIENTS = ROOT / "sandbox" / "patients"
EXPECTED = json.loads((REQUESTS / "expected.json").read_text())
INDEX = json.loads((PATIENTS / "index.json").read_text())
SERVICE = {
    "order-select": "pgx-order-select",
    "order-sign": "pgx-order-sign",
    "medication-prescribe": "pgx-medication-prescribe",
    "patient-view": "pgx-patient-view",
}


def test_every_request_file_is_listed():
    assert set(EXPECTED) == {p.name for p in REQUESTS.glob("*.json")} - {"expected.json"}
    assert len(EXPECTED) >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_request_gives_the_promised_card(client, name, monkeypatch):
    expected = EXPECTED[name]
    if "as_of" in expected:  # the card depends on the day (a year-only birth date, ...)
        day = date.fromisoformat(expected["as_of"])
        monkeypatch.setattr("cds_service.clinical.order_details.current_date", lambda: day)
    body = json.loads((REQUESTS / name).read_text())
    response = client.post(f"/cds-services/{SERVICE[body['hook']]}", json=body)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    if expected["indicator"] is None:
        assert cards == [], expected["expect"]
        return
    [card] = cards
    assert card["indicator"] == expected["indicator"]
    # the guide's promise starts with the card's summary
    assert expected["expect"].startswith(card["summary"]), (card["summary"], expected["expect"])


def test_each_prefetch_answers_the_services_own_templates(knowledge):
    """The requests hold what an R4 server answers for each prefetch template, no more."""
    import importlib.util
    import re

    from cds_service.fhir.queries import prefetch_templates

    templates = prefetch_templates(knowledge)
    for name in EXPECTED:
        body = json.loads((REQUESTS / name).read_text())
        assert set(body["prefetch"]) == set(templates), name
    spec = importlib.util.spec_from_file_location(
        "build", ROOT / "scripts" / "build_sandbox_requests.py"
    )
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for key, statuses in (
        ("activeMedications", build.ORDER_STATUSES),
        ("medicationStatements", build.STATEMENT_STATUSES),
    ):
        asked = re.search(r"status=([^&]+)", templates[key]).group(1).split(",")
        assert tuple(asked) == statuses, key


@pytest.mark.parametrize("patient", [p["id"] for p in INDEX])
def test_patient_bundles_are_idempotent_r4_transactions(patient):
    from fhir.resources.R4B.bundle import Bundle

    raw = json.loads((PATIENTS / f"{patient}.json").read_text())
    Bundle.model_validate(raw)
    assert raw["type"] == "transaction"
    for entry in raw["entry"]:
        res = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}
        assert res["id"].startswith(patient)
    names = [e["resource"] for e in raw["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert names[0]["name"][0]["given"]  # the sandbox's patient banner needs a given name


@pytest.mark.parametrize("patient", INDEX, ids=[p["id"] for p in INDEX])
def test_tester_guide_lists_each_patient_view_summary(patient):
    guide = (ROOT / "sandbox" / "README.md").read_text()
    assert f"| `{patient['id']}` | " in guide
    view = patient["patient_view"]
    if view["indicator"] is not None:
        assert f"| `{patient['id']}` | {view['summary']} |" in guide
