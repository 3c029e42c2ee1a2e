"""Interacting drugs wherever the chart records them: the medication list (MedicationStatement),
orders on hold, and an inhibitor stopped within its lasting effect (issue 22, item 2)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import responses
from builders import (
    APAP_CODEINE,
    PATIENT,
    TRAMADOL,
    bundle,
    days_ago,
    genotype_obs,
    hook_request,
    med_order,
    med_statement,
    shown,
    with_results,
)

from cds_service.core.hook_request import parse_hook_request
from cds_service.fhir.queries import prefetch_templates
from cds_service.pipeline import Engine

FHIR = "https://ehr.example.org/fhir"
FLUOXETINE = ("310385", "Fluoxetine 20 MG Oral Capsule")
PAROXETINE = ("314199", "Paroxetine 20 MG Oral Tablet")
NORMAL = genotype_obs("*1/*1")


def evaluate(
    knowledge,
    settings,
    *,
    statements: list[dict] | None = None,
    orders: list[dict] | None = None,
    drug: tuple[str, str] = APAP_CODEINE,
) -> tuple[list[dict[str, Any]], str]:
    """Cards and trace for ``drug`` ordered for a CYP2D6 normal metabolizer (*1/*1)."""
    prefetch = {
        **with_results(NORMAL),
        "activeMedications": bundle(*(orders or [])),
        "medicationStatements": bundle(*(statements or [])),
        "patient": None,
    }
    body = hook_request("order-select", [med_order(drug)], prefetch=prefetch)
    answer, trace = Engine(knowledge, settings).evaluate(parse_hook_request(body, body["hook"]))
    return answer["cards"], trace.render()


# -- the medication list ---------------------------------------------------------------------


def test_an_inhibitor_on_the_medication_list_converts_the_phenotype(knowledge, settings):
    cards, trace = evaluate(knowledge, settings, statements=[med_statement(FLUOXETINE)])
    [card] = cards
    assert card["indicator"] == "critical" and "fluoxetine" in card["summary"]
    detail = shown(card["detail"])
    assert "functionally a poor metabolizer while taking fluoxetine" in detail
    assert "medication list (MedicationStatement)" in detail
    assert "MedicationStatement/stmt-1 (fluoxetine, medication list" in trace


@pytest.mark.parametrize("status", ["intended", "on-hold", "unknown"])
def test_a_statement_intended_on_hold_or_of_unknown_status_counts(knowledge, settings, status):
    cards, _ = evaluate(knowledge, settings, statements=[med_statement(FLUOXETINE, status=status)])
    [card] = cards
    assert card["indicator"] == "critical"
    assert status.replace("-", " ") in shown(card["detail"])  # the card says how it is recorded


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ("entered-in-error", "entered in error"),
        ("not-taken", "not taken by the patient"),
        ("stopped", "stopping paroxetine ends its effect"),
        ("completed", "stopping paroxetine ends its effect"),
    ],
)
def test_a_statement_in_error_not_taken_or_stopped_is_not_counted(knowledge, settings, status, why):
    statement = med_statement(PAROXETINE, status=status, effectivePeriod={"end": days_ago(3)})
    cards, trace = evaluate(knowledge, settings, statements=[statement])
    assert cards == []
    said = "MedicationStatement/stmt-1 (paroxetine, medication list (MedicationStatement))"
    assert f"{said} not counted: " in trace
    assert why in trace


def test_a_statement_naming_the_inhibitor_only_by_a_referenced_display_counts(knowledge, settings):
    statement = med_statement(None)
    statement["medicationReference"] = {"reference": "Medication/abc", "display": "Prozac 20 mg"}
    [card] = evaluate(knowledge, settings, statements=[statement])[0]
    assert "fluoxetine" in card["summary"]


def test_an_r5_statement_names_its_drug_in_medication_concept(knowledge, settings):
    statement = med_statement(None, status="recorded")
    statement["medication"] = {"concept": {"text": "FLUoxetine 40 mg capsule"}}
    [card] = evaluate(knowledge, settings, statements=[statement])[0]
    assert "fluoxetine" in card["summary"]


def test_another_patients_statement_is_not_read(knowledge, settings):
    theirs = med_statement(FLUOXETINE, patient="someone-else")
    assert evaluate(knowledge, settings, statements=[theirs])[0] == []


def test_without_a_medication_list_the_trace_says_so(knowledge, settings):
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch={**with_results(NORMAL), "activeMedications": bundle(), "patient": None},
    )
    answer, trace = Engine(knowledge, settings).evaluate(parse_hook_request(body, body["hook"]))
    assert answer["cards"] == []
    assert "medicationStatements not prefetched and no fhirServer: not used" in trace.render()


# -- orders on hold ----------------------------------------------------------------------------


def test_an_order_on_hold_counts_it_will_be_resumed(knowledge, settings):
    order = med_order(PAROXETINE, order_id="parox-1")
    order["status"] = "on-hold"
    [card] = evaluate(knowledge, settings, orders=[order], drug=TRAMADOL)[0]
    assert card["indicator"] == "critical" and "paroxetine" in card["summary"]
    assert "on hold (expected to resume)" in shown(card["detail"])


def test_the_searches_ask_for_orders_on_hold_and_the_medication_list(knowledge):
    templates = prefetch_templates(knowledge)
    assert templates["activeMedications"].startswith(
        "MedicationRequest?patient={{context.patientId}}&status=active,on-hold"
    )
    statements = templates["medicationStatements"]
    assert statements.startswith("MedicationStatement?patient={{context.patientId}}&status=")
    asked = set(re.search(r"status=([^&]+)", statements).group(1).split(","))
    assert {"active", "intended", "on-hold", "stopped", "completed"} <= asked
    assert not asked & {"entered-in-error", "not-taken"}


@responses.activate
def test_without_prefetch_the_medication_list_is_read_from_the_fhir_server(call):
    responses.get(re.compile(re.escape(FHIR) + r"/Observation\?.*"), json=bundle(NORMAL))
    responses.get(re.compile(re.escape(FHIR) + r"/MedicationRequest\?.*"), json=bundle())
    responses.get(
        re.compile(re.escape(FHIR) + r"/MedicationStatement\?.*"),
        json=bundle(med_statement(FLUOXETINE)),
    )
    responses.get(f"{FHIR}/Patient/{PATIENT}", json={"resourceType": "Patient", "id": PATIENT})
    body = hook_request("order-select", [med_order(APAP_CODEINE)], fhir_server=FHIR, token="t")
    status, answer = call(body)
    assert status == 200
    [card] = answer["cards"]
    assert "fluoxetine" in card["summary"]
    [read] = [c for c in responses.calls if "/MedicationStatement?" in c.request.url]
    assert f"patient={PATIENT}" in read.request.url
    assert read.request.headers["Authorization"] == "Bearer t"
    [orders] = [c for c in responses.calls if "/MedicationRequest?" in c.request.url]
    assert (
        "status=active%2Con-hold" in orders.request.url
        or "status=active,on-hold" in orders.request.url
    )


# -- an inhibitor stopped within its lasting effect ----------------------------------------------


def test_fluoxetine_stopped_two_weeks_ago_still_counts_with_its_stop_date(knowledge, settings):
    stopped = days_ago(14)
    statement = med_statement(FLUOXETINE, status="stopped", effectivePeriod={"end": stopped})
    cards, trace = evaluate(knowledge, settings, statements=[statement])
    [card] = cards
    assert card["indicator"] == "critical" and "fluoxetine" in card["summary"]
    assert f"fluoxetine stopped {stopped}: its inhibition lasts about five weeks" in shown(
        card["detail"]
    )
    assert "stopped 14 days ago" in trace and stopped not in trace  # no dates in the trace


def test_a_fluoxetine_order_stopped_within_its_lasting_effect_counts(knowledge, settings):
    order = med_order(FLUOXETINE, order_id="flx-1")
    order["status"] = "stopped"
    order["dispenseRequest"] = {"validityPeriod": {"end": days_ago(20)}}
    [card] = evaluate(knowledge, settings, orders=[order], drug=TRAMADOL)[0]
    assert "fluoxetine" in card["summary"]
    assert f"fluoxetine stopped {days_ago(20)}" in shown(card["detail"])


def test_an_active_fluoxetine_order_whose_period_ended_last_week_still_counts(knowledge, settings):
    order = med_order(FLUOXETINE, order_id="flx-1")
    order["status"] = "active"
    order["dosageInstruction"] = [{"timing": {"repeat": {"boundsPeriod": {"end": days_ago(7)}}}}]
    [card] = evaluate(knowledge, settings, orders=[order])[0]
    assert f"fluoxetine stopped {days_ago(7)}" in shown(card["detail"])


def test_fluoxetine_stopped_long_ago_gives_no_conversion(knowledge, settings):
    statement = med_statement(FLUOXETINE, status="stopped", effectivePeriod={"end": days_ago(60)})
    cards, trace = evaluate(knowledge, settings, statements=[statement])
    assert cards == []
    assert "its effect lasts about five weeks (35 days), now over" in trace


def test_a_stopped_statement_without_an_end_dates_from_its_assertion(knowledge, settings):
    recent = med_statement(FLUOXETINE, status="completed", dateAsserted=days_ago(10))
    [card] = evaluate(knowledge, settings, statements=[recent])[0]
    assert f"fluoxetine stopped on or before {days_ago(10)}" in shown(card["detail"])
    old = med_statement(FLUOXETINE, status="completed", dateAsserted=days_ago(90))
    assert evaluate(knowledge, settings, statements=[old])[0] == []


def test_a_stop_date_not_recorded_keeps_a_lasting_inhibitor_and_says_so(knowledge, settings):
    order = med_order(FLUOXETINE, order_id="flx-1")
    order["status"] = "stopped"
    [card] = evaluate(knowledge, settings, orders=[order])[0]
    assert "fluoxetine stopped (the stop date is not recorded)" in shown(card["detail"])


def test_an_inhibitor_without_a_lasting_effect_ends_when_stopped(knowledge, settings):
    order = med_order(PAROXETINE, order_id="parox-1")
    order["status"] = "stopped"
    order["dispenseRequest"] = {"validityPeriod": {"end": days_ago(2)}}
    cards, trace = evaluate(knowledge, settings, orders=[order])
    assert cards == []
    assert "stopping paroxetine ends its effect" in trace


def test_the_lasting_effect_is_data_with_its_source(knowledge):
    lasting = knowledge.interactions["CYP2D6"].inhibitors["fluoxetine"].lasts_after_stopping
    assert lasting is not None and lasting.days == 35 and lasting.text == "about five weeks"
    assert "Prozac" in lasting.source and lasting.url.startswith("https://dailymed")
    others = {
        n for n, i in knowledge.interactions["CYP2D6"].inhibitors.items() if i.lasts_after_stopping
    }
    assert others == {"fluoxetine"}  # only where a label gives the figure


# -- never lower ---------------------------------------------------------------------------------


def test_a_current_order_and_a_stopped_record_of_the_same_drug_count_once(knowledge, settings):
    order = med_order(FLUOXETINE, order_id="flx-1")
    order["status"] = "active"
    stopped = med_statement(FLUOXETINE, status="stopped", effectivePeriod={"end": days_ago(1)})
    [card] = evaluate(knowledge, settings, orders=[order], statements=[stopped])[0]
    assert "active medication" in shown(card["detail"]) and "stopped" not in card["detail"]


def test_the_record_taken_now_is_named_whichever_comes_first(knowledge, settings):
    stopped = med_order(FLUOXETINE, order_id="flx-1")  # orders on file are read first
    stopped["status"] = "stopped"
    stopped["dispenseRequest"] = {"validityPeriod": {"end": days_ago(1)}}
    taken = med_statement(FLUOXETINE)
    [card] = evaluate(knowledge, settings, orders=[stopped], statements=[taken])[0]
    detail = shown(card["detail"])
    assert "medication list (MedicationStatement)" in detail and "stopped" not in detail
