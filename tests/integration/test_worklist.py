"""``pgx-cds worklist`` against the real FHIR server the tests start.

The seed: sandbox patients loaded with ``pgx-cds sandbox load --dir`` under ids of their own
(``wl-…``: the server is shared by the session's tests), each with the orders of one case:
a CYP2D6 poor metabolizer on tramadol (and a completed codeine order), a CYP2C9 poor
metabolizer on celecoxib, a normal metabolizer on codeine, a poor metabolizer with no orders,
an order without results, a normal metabolizer on paroxetine with codeine on hold
(phenoconversion, read from the batched active medications), and a poor metabolizer taking
codeine by a MedicationStatement and meloxicam by an order that references a Medication.
The worklist must list exactly the conflicting orders.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
from serving import ROOT, clean_env

PGX_CDS = str(Path(sys.executable).parent / "pgx-cds")
PATIENTS = ROOT / "sandbox" / "patients"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TRAMADOL = ("835603", "tramadol hydrochloride 50 MG Oral Tablet")
CODEINE = ("993781", "Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet")
CELECOXIB = ("205323", "celecoxib 200 MG Oral Capsule")
MELOXICAM = ("152695", "meloxicam 15 MG Oral Tablet")


def _medication(code: tuple[str, str]) -> dict[str, Any]:
    rxcui, display = code
    return {"coding": [{"system": RXNORM, "code": rxcui, "display": display}], "text": display}


def _order(
    patient: str, name: str, code: tuple[str, str], status: str = "active", **more: Any
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": f"{patient}-{name}",
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": _medication(code),
        "authoredOn": "2025-03-02",
    } | more


#: new id -> (sandbox patient it copies, the resources to add)
def _seed() -> dict[str, tuple[str, list[dict[str, Any]]]]:
    statement = {
        "resourceType": "MedicationStatement",
        "id": "wl-pm2-codeine-statement",
        "status": "active",
        "subject": {"reference": "Patient/wl-pm2"},
        "medicationCodeableConcept": _medication(CODEINE),
        "dateAsserted": "2025-04-10",
    }
    meloxicam = {
        "resourceType": "Medication",
        "id": "wl-meloxicam-15",
        "code": _medication(MELOXICAM),
    }
    by_reference = {
        "resourceType": "MedicationRequest",
        "id": "wl-pm2-meloxicam",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/wl-pm2"},
        "medicationReference": {"reference": "Medication/wl-meloxicam-15"},
        "authoredOn": "2025-04-11",
    }
    return {
        "wl-pm": (
            "pgx-cyp2d6-pm",
            [
                _order("wl-pm", "tramadol", TRAMADOL),
                _order("wl-pm", "codeine-done", CODEINE, status="completed"),
            ],
        ),
        "wl-cyp2c9-pm": ("pgx-cyp2c9-pm", [_order("wl-cyp2c9-pm", "celecoxib", CELECOXIB)]),
        "wl-nm": ("pgx-cyp2d6-nm", [_order("wl-nm", "codeine", CODEINE)]),
        "wl-pm-no-orders": ("pgx-cyp2d6-pm", []),
        "wl-untested": ("pgx-no-results", [_order("wl-untested", "tramadol", TRAMADOL)]),
        "wl-paroxetine": (
            "pgx-cyp2d6-nm-paroxetine",
            [_order("wl-paroxetine", "codeine", CODEINE, status="on-hold")],
        ),
        "wl-pm2": ("pgx-cyp2d6-pm-cyp2c9-pm", [statement, meloxicam, by_reference]),
    }


#: What the worklist must list: (patient, order, indicator, summary starts with)
EXPECTED = {
    ("Patient/wl-pm", "MedicationRequest/wl-pm-tramadol", "critical", "Avoid tramadol"),
    (
        "Patient/wl-cyp2c9-pm",
        "MedicationRequest/wl-cyp2c9-pm-celecoxib",
        "warning",
        "Adjust celecoxib dose",
    ),
    (
        "Patient/wl-paroxetine",
        "MedicationRequest/wl-paroxetine-codeine",
        "critical",
        "Avoid codeine",
    ),
    ("Patient/wl-pm2", "MedicationStatement/wl-pm2-codeine-statement", "critical", "Avoid codeine"),
    ("Patient/wl-pm2", "MedicationRequest/wl-pm2-meloxicam", "warning", ""),
}


def write_seed(folder: Path) -> Path:
    """The seed as a folder ``pgx-cds sandbox load --dir`` reads (bundles and index.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for new, (source, extra) in _seed().items():
        text = (PATIENTS / f"{source}.json").read_text(encoding="utf-8").replace(source, new)
        bundle = json.loads(text)
        for resource in extra:
            kind = resource["resourceType"]
            bundle["entry"].append(
                {
                    "resource": resource,
                    "request": {"method": "PUT", "url": f"{kind}/{resource['id']}"},
                }
            )
        (folder / f"{new}.json").write_text(json.dumps(bundle), encoding="utf-8")
        index.append({"id": new, "name": new, "try": []})
    (folder / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return folder


def write_sandbox_orders(folder: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """Every sandbox patient under a ``wls-`` id, with an order written today (a new start, as
    at a hook call) for each drug its ``index.json`` entry tries; returns (patient, order,
    the try), the chart's own active orders of a tried drug included (they get its card too:
    the continuing carbamazepine of ``pgx-hla-b1502-continuing``)."""
    folder.mkdir(parents=True, exist_ok=True)
    today = date.today().isoformat()
    index, tries = [], []
    for patient in json.loads((PATIENTS / "index.json").read_text(encoding="utf-8")):
        source = patient["id"]
        new = "wls-" + source.removeprefix("pgx-")
        bundle = json.loads(
            (PATIENTS / f"{source}.json").read_text(encoding="utf-8").replace(source, new)
        )
        on_file = [e["resource"] for e in bundle["entry"]]
        for attempt in patient["try"]:
            code = (attempt["order"], attempt["order_display"])
            order = _order(new, attempt["order"], code, authoredOn=today)
            bundle["entry"].append(
                {
                    "resource": order,
                    "request": {"method": "PUT", "url": f"MedicationRequest/{order['id']}"},
                }
            )
            tries.append((f"Patient/{new}", f"MedicationRequest/{order['id']}", attempt))
            tries += [
                (f"Patient/{new}", f"{r['resourceType']}/{r['id']}", attempt)
                for r in on_file
                if r["resourceType"] in ("MedicationRequest", "MedicationStatement")
                and r.get("status") in ("active", "on-hold")
                and attempt["order"] in json.dumps(r.get("medicationCodeableConcept"))
            ]
        (folder / f"{new}.json").write_text(json.dumps(bundle), encoding="utf-8")
        index.append({"id": new, "name": new, "try": []})
    (folder / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return tries


def _pgx(*args: str, token: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PGX_CDS, *args],
        env=clean_env(PGX_CDS_FHIR_TOKEN=token, **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def seeded(fhir_server, tmp_path_factory) -> None:
    folder = write_seed(tmp_path_factory.mktemp("seed"))
    loaded = _pgx(
        "sandbox",
        "load",
        "--fhir",
        fhir_server.base_url,
        "--dir",
        str(folder),
        token=fhir_server.token,
    )
    assert loaded.returncode == 0, loaded.stderr


def _mine(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows about this test's patients (others' tests share the server)."""
    return [r for r in rows if r["patient"].startswith("Patient/wl-")]


def _tasks(fhir_server) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{fhir_server.base_url}/Task?_count=1000", headers=fhir_server.headers, timeout=10
    )
    assert answer.status_code == 200
    return [e["resource"] for e in answer.json().get("entry", [])]


def test_the_worklist_lists_exactly_the_conflicting_orders(fhir_server, seeded, tmp_path):
    table, page = tmp_path / "worklist.csv", tmp_path / "worklist.html"
    done = _pgx(
        "worklist",
        "--fhir-server",
        fhir_server.base_url,
        "--csv",
        str(table),
        "--html",
        str(page),
        token=fhir_server.token,
    )
    assert done.returncode == 0, done.stderr
    rows = _mine(list(csv.DictReader(table.open(encoding="utf-8"))))
    found = {(r["patient"], r["order"], r["indicator"]) for r in rows}
    assert found == {(p, o, i) for p, o, i, _ in EXPECTED}
    assert len(rows) == len(found)  # one card each
    for patient, order, _, summary in EXPECTED:
        [row] = [r for r in rows if (r["patient"], r["order"]) == (patient, order)]
        assert row["summary"].startswith(summary)
        assert row["advice"] and row["genes"]
    tramadol = next(r for r in rows if r["order"].endswith("wl-pm-tramadol"))
    assert (tramadol["drug"], tramadol["genes"]) == ("tramadol", "CYP2D6")
    assert tramadol["result_date"] == "2025-01-13" and tramadol["order_date"] == "2025-03-02"
    assert "Recommendation (CPIC, strong)" in tramadol["advice"]
    paroxetine = next(r for r in rows if r["patient"] == "Patient/wl-paroxetine")
    assert (
        "while taking paroxetine" in paroxetine["summary"]
        and paroxetine["order_status"] == "on-hold"
    )
    # the page, and what goes to the log: counts, never a patient
    html = page.read_text(encoding="utf-8")
    assert "Patient/wl-pm" in html and "MedicationStatement/wl-pm2-codeine-statement" in html
    assert "wl-" not in done.stderr and "wl-" not in done.stdout
    assert "to review" in done.stdout
    assert "integration-test-token" not in done.stderr + done.stdout
    # it wrote nothing
    assert not [t for t in _tasks(fhir_server) if "wl-" in json.dumps(t)]


def test_without_files_the_list_is_printed(fhir_server, seeded):
    done = _pgx(
        "worklist", "--fhir-server", fhir_server.base_url, "--quiet", token=fhir_server.token
    )
    assert done.returncode == 0, done.stderr
    assert "[critical] Patient/wl-pm  MedicationRequest/wl-pm-tramadol" in done.stdout
    assert "wl-nm" not in done.stdout and "wl-untested" not in done.stdout
    assert done.stderr == ""


def test_since_lists_only_what_is_new(fhir_server, seeded, tmp_path):
    """Every seeded order and result is older than 2025-04-11 but the meloxicam order (written
    that day); the results were recorded (lastUpdated) today, but issued long ago."""
    table = tmp_path / "new.csv"
    done = _pgx(
        "worklist",
        "--fhir-server",
        fhir_server.base_url,
        "--since",
        "2025-04-11",
        "--csv",
        str(table),
        token=fhir_server.token,
    )
    assert done.returncode == 0, done.stderr
    rows = _mine(list(csv.DictReader(table.open(encoding="utf-8"))))
    assert [r["order"] for r in rows] == ["MedicationRequest/wl-pm2-meloxicam"]


def test_tasks_are_written_once(fhir_server, seeded, tmp_path):
    for _ in range(2):
        done = _pgx(
            "worklist",
            "--fhir-server",
            fhir_server.base_url,
            "--task",
            "--csv",
            str(tmp_path / "w.csv"),
            token=fhir_server.token,
        )
        assert done.returncode == 0, done.stderr
    mine = [t for t in _tasks(fhir_server) if t["for"]["reference"].startswith("Patient/wl-")]
    assert sorted(t["focus"]["reference"] for t in mine) == sorted(o for _, o, _, _ in EXPECTED)
    tramadol = next(t for t in mine if t["focus"]["reference"].endswith("wl-pm-tramadol"))
    assert tramadol["status"] == "requested" and tramadol["priority"] == "urgent"
    assert tramadol["description"].startswith("Avoid tramadol")
    assert "already there" in done.stdout


def test_every_sandbox_scenario_is_listed_as_its_hook_card_says(fhir_server, tmp_path):
    """Each sandbox patient on every drug its scenarios try: the worklist lists exactly the
    orders whose hook card (sandbox/patients/index.json) is warning or critical, with that
    card's summary: results, phenoconversion, age rules and HLA as a hook call reads them."""
    tries = write_sandbox_orders(tmp_path / "sandbox")
    loaded = _pgx(
        "sandbox",
        "load",
        "--fhir",
        fhir_server.base_url,
        "--dir",
        str(tmp_path / "sandbox"),
        token=fhir_server.token,
    )
    assert loaded.returncode == 0, loaded.stderr
    table = tmp_path / "all.csv"
    done = _pgx(
        "worklist",
        "--fhir-server",
        fhir_server.base_url,
        "--csv",
        str(table),
        "--quiet",
        token=fhir_server.token,
    )
    assert done.returncode == 0, done.stderr
    rows = [r for r in csv.DictReader(table.open(encoding="utf-8")) if "/wls-" in r["patient"]]
    listed = {(r["patient"], r["order"]): r for r in rows}
    expected = {(p, o): t for p, o, t in tries if t["indicator"] in ("warning", "critical")}
    # a scenario whose card depends on the day holds as of its as_of day only (the served
    # code reckons from today): on other days it is left out on both sides
    today = date.today().isoformat()
    other_day = {(p, o) for p, o, t in tries if t.get("as_of", today) != today}
    listed = {k: v for k, v in listed.items() if k not in other_day}
    expected = {k: v for k, v in expected.items() if k not in other_day}
    assert listed.keys() == expected.keys()
    for key, attempt in expected.items():
        assert listed[key]["indicator"] == attempt["indicator"], key
        assert attempt["expect"].startswith(listed[key]["summary"]), key
