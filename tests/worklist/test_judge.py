"""Each order is judged by ``Engine.evaluate`` itself, on the hook request an EHR would send
when signing it; the rows are that call's warning and critical cards."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from builders import gene_component, phenotype_obs
from conftest import BASE, TOKEN, order, patient, with_site

from cds_service.core.errors import ClientError
from cds_service.governance.site_config import SiteConfig
from cds_service.pipeline import Engine
from cds_service.worklist.judge import Judge, advice, as_order, hook_for, results_of

CODEINE = ("993781", "Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet")
TRAMADOL = ("835603", "tramadol hydrochloride 50 MG Oral Tablet")
PAROXETINE = ("32937", "paroxetine")


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def prefetch(
    *results: dict[str, Any], person: dict[str, Any] | None = None, active=()
) -> dict[str, Any]:
    return {
        "genomicResults": _bundle(*results),
        "patient": person or patient("p1"),
        "activeMedications": _bundle(*active),
    }


def judge(engine: Engine, resource: dict[str, Any], data: dict[str, Any]):
    results = results_of(engine, "p1", data, BASE)
    j = Judge(engine, hook_for(engine.site) or "order-sign", BASE, TOKEN)
    reference = f"{resource['resourceType']}/{resource['id']}"
    return j.order("p1", reference, resource, {}, data, results)


def test_the_order_goes_through_engine_evaluate_as_an_order_sign_request(engine, monkeypatch):
    seen = []
    real = Engine.evaluate

    def spy(self, request, **kwargs):
        seen.append(request)
        return real(self, request, **kwargs)

    monkeypatch.setattr(Engine, "evaluate", spy)
    pm = phenotype_obs("Poor Metabolizer", patient="p1")
    [row] = judge(engine, order("rx-1", "p1", TRAMADOL), prefetch(pm))
    [request] = seen
    assert request.hook == "order-sign" and request.fhirServer == BASE
    assert request.access_token == TOKEN and request.patient_id == "p1"
    [entry] = request.context["draftOrders"]["entry"]
    assert entry["resource"]["id"] == "rx-1"
    assert set(request.prefetch) == {"genomicResults", "patient", "activeMedications"}
    assert row.summary.startswith("Avoid tramadol: CYP2D6 poor metabolizer")
    assert (row.indicator, row.drug, row.genes, row.recommendation) == (
        "critical",
        "tramadol",
        "CYP2D6",
        "tramadol-cyp2d6-pm",
    )
    assert row.patient == "Patient/p1" and row.order == "MedicationRequest/rx-1"
    assert row.medication == TRAMADOL[1] and row.order_date == "2026-01-10"
    assert row.result_date == "2024-03-01"
    assert row.advice.startswith("Recommendation (CPIC, strong): Do not prescribe tramadol")


def test_what_the_prescribing_code_decides_is_what_the_worklist_lists(engine, monkeypatch):
    """No rule of its own: with evaluate answering no card, there is no row."""
    monkeypatch.setattr(Engine, "evaluate", lambda self, request, **kw: ({"cards": []}, None))
    pm = phenotype_obs("Poor Metabolizer", patient="p1")
    assert judge(engine, order("rx-1", "p1", TRAMADOL), prefetch(pm)) == []


def test_info_cards_and_no_cards_are_not_listed(engine):
    im = phenotype_obs("Intermediate Metabolizer", patient="p1")
    assert judge(engine, order("rx-1", "p1", CODEINE), prefetch(im)) == []  # an info card
    nm = phenotype_obs("Normal Metabolizer", patient="p1")
    assert judge(engine, order("rx-1", "p1", CODEINE), prefetch(nm)) == []
    assert judge(engine, order("rx-1", "p1", CODEINE), prefetch()) == []  # untested


def test_an_interacting_drug_among_the_active_orders_converts_the_phenotype(engine):
    nm = phenotype_obs("Normal Metabolizer", patient="p1")
    data = prefetch(nm, active=[order("parox", "p1", PAROXETINE)])
    [row] = judge(engine, order("rx-1", "p1", CODEINE), data)
    assert "while taking paroxetine" in row.summary and row.indicator == "critical"


def test_a_child_on_codeine_is_listed_by_the_age_rule_without_any_result(engine):
    data = prefetch(person=patient("p1", birth_date="2020-01-01"))
    [row] = judge(engine, order("rx-1", "p1", CODEINE), data)
    assert row.recommendation == "codeine-under-12" and row.drug == "codeine"
    assert row.genes == "" and row.result_date == ""
    assert row.changed_since == "2026-01-10"  # the order's date alone


def test_a_label_rule_on_the_chart_is_listed_and_kept_by_since(engine):
    """Breastfeeding recorded after the order was written: the card rests on the chart, whose
    date the worklist does not know, so --since keeps it (changed_since unknown)."""
    data = prefetch(person=patient("p1", birth_date="1990-01-01"))
    data["breastfeedingStatus"] = _bundle(
        {
            "resourceType": "Observation",
            "id": "bf",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "63895-7"}]},
            "effectiveDateTime": date.today().isoformat(),
            "valueCodeableConcept": {
                "coding": [{"system": "http://loinc.org", "code": "LA29252-6"}]
            },
        }
    )
    [row] = judge(engine, order("rx-1", "p1", CODEINE), data)
    assert row.recommendation == "codeine-breastfeeding" and row.indicator == "warning"
    assert row.changed_since == ""


def test_a_medication_statement_is_judged_as_the_order_it_stands_for(engine):
    statement = order("st-1", "p1", TRAMADOL, resource_type="MedicationStatement")
    statement["dosage"] = [{"text": "50 mg every 6 hours"}]
    as_request = as_order(statement)
    assert as_request["resourceType"] == "MedicationRequest" and as_request["intent"] == "order"
    assert as_request["dosageInstruction"] == statement["dosage"]
    assert as_request["authoredOn"] == "2026-01-10" and "dosage" not in as_request
    pm = phenotype_obs("Poor Metabolizer", patient="p1")
    [row] = judge(engine, statement, prefetch(pm))
    assert row.order == "MedicationStatement/st-1" and row.order_date == "2026-01-10"


def test_a_silent_drug_is_not_listed_and_the_hook_follows_the_site(engine):
    pm = phenotype_obs("Poor Metabolizer", patient="p1")
    silent = with_site(engine, SiteConfig(drugs={"tramadol": "silent"}))
    assert judge(silent, order("rx-1", "p1", TRAMADOL), prefetch(pm)) == []
    assert hook_for(SiteConfig(hooks={"order-sign": "off"})) == "order-select"
    assert hook_for(SiteConfig(hooks={"order-sign": "silent", "order-select": "off"})) == (
        "medication-prescribe"
    )
    assert hook_for(SiteConfig(silent=True)) is None
    # order-select: the request selects the order, and the site's indicator applies
    site = SiteConfig(hooks={"order-sign": "off"}, indicators={"tramadol-cyp2d6-pm": "warning"})
    [row] = judge(with_site(engine, site), order("rx-1", "p1", TRAMADOL), prefetch(pm))
    assert row.indicator == "warning"


def test_the_result_date_and_its_issue_come_from_the_result_the_card_rests_on(engine):
    older = phenotype_obs("Normal Metabolizer", patient="p1", obs_id="old", date="2019-01-01")
    newer = {
        **phenotype_obs("Poor Metabolizer", patient="p1", obs_id="new", date="2025-06-01"),
        "issued": "2025-06-09T10:00:00Z",
    }
    written_before = order("rx-1", "p1", TRAMADOL, written="2024-01-01")
    [row] = judge(engine, written_before, prefetch(older, newer))
    assert (row.result_date, row.result_issued) == ("2025-06-01", "2025-06-09T10:00:00Z")
    assert row.changed_since == "2025-06-09T10:00:00Z"


def test_results_not_prefetched_leave_the_dates_unknown(engine, fhir):
    fhir.add(phenotype_obs("Poor Metabolizer", patient="p1"))
    data = {"patient": patient("p1"), "activeMedications": _bundle()}
    # (the prescribing code reads the results itself, from the FHIR server)
    [row] = judge(engine, order("rx-1", "p1", TRAMADOL), data)
    assert row.result_date == "" and row.changed_since == ""
    assert any("/Observation?patient=p1" in r.url for r in fhir.requests)


def test_an_order_the_prescribing_code_refuses_raises(engine):
    bad = order("rx-1", "p1", TRAMADOL)
    bad["medicationCodeableConcept"]["coding"][0]["system"] = ["not", "a", "string"]
    with pytest.raises(ClientError):
        judge(engine, bad, prefetch())


def test_advice_is_the_first_paragraph_as_plain_text():
    detail = (
        "**Recommendation** (CPIC, strong): Use `*4` [guideline](https://x.org) text.\n\n"
        "**Why:** more"
    )
    assert advice(detail) == "Recommendation (CPIC, strong): Use *4 guideline text."
    assert advice("") == ""


def test_typing_that_cannot_exclude_hla_b_15_02_is_listed_and_kept_by_since(engine):
    """An unclear result's card (knowledge/rules/unclear_results.json) is a warning on the
    worklist too; with no date the worklist can read, --since keeps it."""
    low_resolution = {
        "resourceType": "Observation",
        "id": "hla-low",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "84414-2"}]},
        "valueCodeableConcept": {"text": "HLA-B*15"},
        "component": [gene_component("HLA-B")],
    }
    carbamazepine = ("308979", "carbamazepine 200 MG Oral Tablet")
    [row] = judge(engine, order("rx-1", "p1", carbamazepine), prefetch(low_resolution))
    assert (row.indicator, row.recommendation, row.drug, row.genes) == (
        "warning",
        "carbamazepine-hlab1502-unclear",
        "carbamazepine",
        "HLA-B*15:02",
    )
    assert (row.result_date, row.changed_since) == ("", "")  # the result has no date
