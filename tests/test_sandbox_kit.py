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
    # and lists the card's one-click suggestions, label for label (what `pgx-cds sandbox load`
    # prints and the guide's table shows)
    assert [s["label"] for s in card.get("suggestions", [])] == expected["suggestions"]
    if "one_click" in expected:  # why there is none, as the card says it
        assert expected["one_click"] in card["detail"]


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


def _build_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_sandbox_requests", ROOT / "scripts" / "build_sandbox_requests.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_guides_patient_table_is_the_index():
    """The table is written from index.json (run scripts/build_sandbox_requests.py)."""
    script = _build_script()
    guide = (ROOT / "sandbox" / "README.md").read_text()
    start = guide.index(script.TABLE_START) + len(script.TABLE_START)
    assert guide[start : guide.index(script.TABLE_END)].strip() == script.guide_table(INDEX)


def test_every_request_file_is_what_the_index_builds():
    """expected.json is the index's promise for each file (no hand edits that drift)."""
    for name, expected in EXPECTED.items():
        patient = next(p for p in INDEX if p["id"] == expected["patient"])
        if expected["order"] is None:
            assert expected["expect"] == patient["patient_view"]["summary"]
            continue
        [attempt] = [
            t
            for t in patient["try"]
            if t["order"] == expected["order"] and t["expect"] == expected["expect"]
        ]
        assert expected["suggestions"] == attempt.get("suggestions", []), name


def _quoted_suggestions(text: str) -> list[str]:
    """The suggestion labels a document quotes: "Replace with …" up to the closing quote."""
    import re

    return re.findall(r'"(Replace with [^"]+)"', " ".join(text.split()))


def test_the_readme_try_it_is_what_the_service_answers(client):
    """README "Try it": the curl body, POSTed, gives the card and the suggestion it names."""
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Try it") : readme.index("## Sandbox kit")]
    body = json.loads(re.search(r"-d '(\{.*?\})' \|", section, re.DOTALL).group(1))
    answer = client.post("/cds-services/pgx-order-select", json=body).get_json()
    [card] = answer["cards"]
    prose = " ".join(section.split())
    assert f'a {card["indicator"]} card, "{card["summary"]}"' in prose
    labels = [s["label"] for s in card["suggestions"]]
    assert _quoted_suggestions(section) == labels
    assert "one suggestion" in prose if len(labels) == 1 else True


def test_the_guides_step_6_quotes_what_the_card_offers():
    guide = (ROOT / "sandbox" / "README.md").read_text()
    step = guide[guide.index("6. **Rx View**") : guide.index("7. **Rx Sign**")]
    quoted = _quoted_suggestions(step)
    assert quoted
    offered = {label for p in INDEX for t in p["try"] for label in t.get("suggestions", [])}
    for label in quoted:
        assert label in offered or (
            label.endswith("…") and any(o.startswith(label[:-1].rstrip()) for o in offered)
        ), label
