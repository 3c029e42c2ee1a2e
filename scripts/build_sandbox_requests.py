#!/usr/bin/env python3
"""Regenerate ``sandbox/requests/``: ready-to-POST hook requests for the sandbox patients.

For every order a patient's entry in ``sandbox/patients/index.json`` says to try, writes an
``order-select`` request (R4 ``MedicationRequest``) whose prefetch holds what an R4 server
returns for the service's own prefetch templates. A few more show the other shapes clients
send: the public sandbox's DSTU2 ``MedicationOrder``, ``order-sign``, the legacy
``medication-prescribe`` (STU3), and calls without prefetch. Every patient also gets a
``patient-view`` request (the chart opens; no order) expecting the summary in the index.
``expected.json`` records the card each should give (from the index: indicator, summary, the
one-click suggestions' exact labels, and for an order without one what the card says about
it), and the tests check every file against it. An attempt whose card depends on the day (a
birth date of a year only, a surgery counted for 30 days) says in ``as_of`` the day its
expectation holds; the kit's test reckons from that day. The patient table of
``sandbox/README.md`` is written from the same index (between its ``<!-- patients: ... -->``
markers), so the guide says what the service answers.

Usage: ``python scripts/build_sandbox_requests.py``
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PATIENTS = ROOT / "sandbox" / "patients"
REQUESTS = ROOT / "sandbox" / "requests"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: the statuses the service's searches ask for (cds_service/fhir/queries.py; a test checks)
ORDER_STATUSES = ("active", "on-hold")
STATEMENT_STATUSES = ("active", "intended", "on-hold", "stopped", "completed", "unknown")


def genomic_codes() -> set[str]:
    return set(json.loads((ROOT / "knowledge" / "result_codes.json").read_text())["codes"])


def drug_name(rxcui: str) -> str:
    """The ingredient an order is about (codeine, not the acetaminophen beside it)."""
    products = json.loads((ROOT / "knowledge" / "rxnorm_products.json").read_text())["products"]
    ingredients = [i for i in products[rxcui]["ingredients"] if i != "acetaminophen"]
    return ingredients[0] if ingredients else products[rxcui]["ingredients"][0]


def resources(patient_id: str) -> list[dict[str, Any]]:
    bundle = json.loads((PATIENTS / f"{patient_id}.json").read_text())
    return [e["resource"] for e in bundle["entry"]]


def searchset(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(items),
        "entry": [{"resource": r} for r in items],
    }


def status_codes() -> set[str]:
    """'system|code' of the status Observations the label rules read (breastfeeding)."""
    rules = json.loads((ROOT / "knowledge" / "rules" / "label_rules.json").read_text())
    return {
        f"{uri}|{code}"
        for finding in rules["findings"].values()
        if "observation" in finding
        for group in finding["observation"]["codes"]
        for uri in rules["systems"][group["system"]]["uris"]
        for code in group.get("codes", [])
    }


def newest_first(items: list[dict[str, Any]], *fields: str) -> list[dict[str, Any]]:
    """As ``_sort=-date`` orders them: by the first of ``fields`` present, newest first."""

    def when(r: dict[str, Any]) -> str:
        for f in fields:
            value = r
            for part in f.split("."):
                value = value.get(part, {}) if isinstance(value, dict) else {}
            if isinstance(value, str):
                return value
        return ""

    return sorted(items, key=when, reverse=True)


def chart(everything: list[dict[str, Any]]) -> dict[str, Any]:
    """The label rules' chart reads as an R4 server answers their templates:
    ``Procedure?patient=…&_sort=-date&_count=50``, ``Condition?patient=…&clinical-status=
    active,recurrence,relapse&_count=100``, ``Observation?patient=…&code=<breastfeeding
    status>&_sort=-date&_count=10``."""
    procedures = [r for r in everything if r["resourceType"] == "Procedure"]
    current = {"active", "recurrence", "relapse"}
    conditions = [
        r
        for r in everything
        if r["resourceType"] == "Condition"
        and any(c.get("code") in current for c in r.get("clinicalStatus", {}).get("coding", []))
    ]
    codes = status_codes()
    statuses = [
        r
        for r in everything
        if r["resourceType"] == "Observation"
        and any(f"{c.get('system')}|{c.get('code')}" in codes for c in r["code"].get("coding", []))
    ]
    return {
        "recentProcedures": searchset(
            newest_first(procedures, "performedDateTime", "performedPeriod.start")[:50]
        ),
        "activeConditions": searchset(conditions[:100]),
        "breastfeedingStatus": searchset(
            newest_first(statuses, "effectiveDateTime", "effectivePeriod.start")[:10]
        ),
    }


def prefetch(patient_id: str) -> dict[str, Any]:
    """What an R4 server answers for the service's prefetch templates."""
    codes = genomic_codes()
    everything = resources(patient_id)
    genomic = [
        r
        for r in everything
        if r["resourceType"] == "Observation"
        and any(f"{c.get('system')}|{c.get('code')}" in codes for c in r["code"].get("coding", []))
    ]
    orders = [
        r
        for r in everything
        if r["resourceType"] == "MedicationRequest" and r["status"] in ORDER_STATUSES
    ]
    statements = [
        r
        for r in everything
        if r["resourceType"] == "MedicationStatement" and r["status"] in STATEMENT_STATUSES
    ]
    patient = next(r for r in everything if r["resourceType"] == "Patient")
    return {
        "patient": patient,
        "genomicResults": searchset(genomic),
        "activeMedications": searchset(orders + included(orders, everything)),
        "medicationStatements": searchset(statements + included(statements, everything)),
        **chart(everything),
    }


def included(found: list[dict[str, Any]], everything: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Medications ``found`` reference, as ``_include=…:medication`` brings them."""
    wanted = {r.get("medicationReference", {}).get("reference") for r in found} - {None}
    return [
        r
        for r in everything
        if r["resourceType"] == "Medication" and f"Medication/{r['id']}" in wanted
    ]


#: The dose an order carries unless the index gives one (``dosage``).
DEFAULT_DOSAGE = {
    "text": "1 tablet every 6 hours as needed",
    "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "{pill}"}}],
}


def order(
    patient_id: str,
    rxcui: str,
    display: str,
    version: str = "R4",
    dosage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    concept = {"text": display, "coding": [{"system": RXNORM, "code": rxcui, "display": display}]}
    if version == "DSTU2":  # as the public sandbox builds it for a DSTU2 server
        return {
            "resourceType": "MedicationOrder",
            "id": "order-123",
            "status": "draft",
            "patient": {"reference": f"Patient/{patient_id}"},
            "dateWritten": "2026-11-28",
            "intent": "order",
            "category": {"coding": [{"code": "outpatient"}]},
            "medicationCodeableConcept": concept,
        }
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-11-28",
        "medicationCodeableConcept": concept,
    }
    if version == "R4":
        res["dosageInstruction"] = [dosage or DEFAULT_DOSAGE]
    return res


def request(
    hook: str,
    patient_id: str,
    draft: dict[str, Any] | None,
    *,
    with_prefetch: bool = True,
    fhir_server: str | None = None,
) -> dict[str, Any]:
    """A hook call; ``draft`` is the order (None for ``patient-view``, which has none)."""
    context: dict[str, Any] = {"userId": "Practitioner/COREPRACTITIONER1", "patientId": patient_id}
    container = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}
    if draft is None:
        pass
    elif hook == "medication-prescribe":
        context["medications"] = container
    else:
        context["draftOrders"] = container
        if hook == "order-select":
            context["selections"] = [f"{draft['resourceType']}/{draft['id']}"]
    body: dict[str, Any] = {
        "hookInstance": str(
            uuid.uuid5(
                uuid.NAMESPACE_URL, f"{hook}/{patient_id}/{json.dumps(draft, sort_keys=True)}"
            )
        ),
        "hook": hook,
        "context": context,
    }
    if fhir_server:
        body["fhirServer"] = fhir_server
    if with_prefetch:
        body["prefetch"] = prefetch(patient_id)
    return body


def main() -> None:
    index = json.loads((PATIENTS / "index.json").read_text())
    REQUESTS.mkdir(parents=True, exist_ok=True)
    for old in REQUESTS.glob("**/*.json"):
        old.unlink()
    expected: dict[str, Any] = {}

    def write(name: str, body: dict[str, Any], patient: str, attempt: dict[str, Any]) -> None:
        (REQUESTS / name).write_text(json.dumps(body, indent=1) + "\n")
        expected[name] = {
            "patient": patient,
            "order": attempt["order"],
            "indicator": attempt["indicator"],
            "expect": attempt["expect"],
            "suggestions": attempt.get("suggestions", []),
        }
        if "as_of" in attempt:
            expected[name]["as_of"] = attempt["as_of"]
        if "one_click" in attempt:
            expected[name]["one_click"] = attempt["one_click"]

    for entry in index:
        for attempt in entry["try"]:
            drug = attempt.get("file") or drug_name(attempt["order"])
            draft = order(
                entry["id"],
                attempt["order"],
                attempt["order_display"],
                dosage=attempt.get("dosage"),
            )
            write(
                f"order-select-{entry['id']}-{drug}.json",
                request("order-select", entry["id"], draft),
                entry["id"],
                attempt,
            )

    for entry in index:  # Patient View: the chart opens, no order
        view = entry["patient_view"]
        write(
            f"patient-view-{entry['id']}.json",
            request("patient-view", entry["id"], None),
            entry["id"],
            {"order": None, "indicator": view["indicator"], "expect": view["summary"]},
        )

    by_patient = {e["id"]: e for e in index}
    um_codeine = by_patient["pgx-cyp2d6-um"]["try"][0]
    pm_tramadol = by_patient["pgx-cyp2d6-pm"]["try"][1]
    write(
        "order-select-dstu2-pgx-cyp2d6-um-codeine.json",
        request(
            "order-select",
            "pgx-cyp2d6-um",
            order("pgx-cyp2d6-um", um_codeine["order"], um_codeine["order_display"], "DSTU2"),
        ),
        "pgx-cyp2d6-um",
        um_codeine,
    )
    write(
        "order-sign-pgx-cyp2d6-pm-tramadol.json",
        request(
            "order-sign",
            "pgx-cyp2d6-pm",
            order("pgx-cyp2d6-pm", pm_tramadol["order"], pm_tramadol["order_display"]),
        ),
        "pgx-cyp2d6-pm",
        pm_tramadol,
    )
    write(
        "medication-prescribe-stu3-pgx-cyp2d6-um-codeine.json",
        request(
            "medication-prescribe",
            "pgx-cyp2d6-um",
            order("pgx-cyp2d6-um", um_codeine["order"], um_codeine["order_display"], "STU3"),
        ),
        "pgx-cyp2d6-um",
        um_codeine,
    )
    (REQUESTS / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    no_prefetch = request(
        "order-select",
        "pgx-cyp2d6-um",
        order("pgx-cyp2d6-um", um_codeine["order"], um_codeine["order_display"]),
        with_prefetch=False,
        fhir_server="{{FHIR_BASE}}",  # filled in by `pgx-cds explain --fhir` or sed (README)
    )
    (REQUESTS / "no-prefetch").mkdir(exist_ok=True)
    (REQUESTS / "no-prefetch" / "order-select-pgx-cyp2d6-um-codeine.json").write_text(
        json.dumps(no_prefetch, indent=1) + "\n"
    )
    view = request(
        "patient-view",
        "pgx-cyp2d6-pm-cyp2c9-pm",
        None,
        with_prefetch=False,
        fhir_server="{{FHIR_BASE}}",  # filled in by `pgx-cds explain --fhir` or sed (README)
    )
    (REQUESTS / "no-prefetch" / "patient-view-pgx-cyp2d6-pm-cyp2c9-pm.json").write_text(
        json.dumps(view, indent=1) + "\n"
    )
    write_guide_table(index)
    print(f"wrote {len(expected)} requests with prefetch and 2 without to {REQUESTS}")


GUIDE = ROOT / "sandbox" / "README.md"
TABLE_START = (
    "<!-- patients: written by scripts/build_sandbox_requests.py from patients/index.json -->"
)
TABLE_END = "<!-- end of patients -->"


def guide_table(index: list[dict[str, Any]]) -> str:
    """The tester guide's patient table: each order to try, the card, what it says and the
    one-click suggestions it offers (their exact labels, as the tests check them)."""
    rows = [
        "| patient id | order | card | what it says | one-click suggestions |",
        "|---|---|---|---|---|",
    ]
    for entry in index:
        for attempt in entry["try"]:
            offered = "<br>".join(f"“{_cell(s)}”" for s in attempt.get("suggestions", []))
            rows.append(
                f"| `{entry['id']}` | {_cell(attempt['order_display'])} (`{attempt['order']}`) "
                f"| {attempt['indicator'] or '—'} | {_cell(attempt['expect'])} | {offered or '—'} |"
            )
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def write_guide_table(index: list[dict[str, Any]]) -> None:
    guide = GUIDE.read_text()
    start, end = guide.index(TABLE_START) + len(TABLE_START), guide.index(TABLE_END)
    GUIDE.write_text(guide[:start] + "\n" + guide_table(index) + "\n" + guide[end:])


if __name__ == "__main__":
    main()
