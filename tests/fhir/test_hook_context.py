"""Which draft orders are judged: not those whose status says they are over or were never real,
nor those of another patient; orders without a status or subject are (the sandbox sends some)."""

from __future__ import annotations

from typing import Any

import pytest
from builders import APAP_CODEINE, PATIENT, hook_request, med_order, phenotype_obs, with_results

from cds_service.core.hook_request import parse_hook_request
from cds_service.fhir.hook_context import DraftOrder, not_judged, referenced_patient
from cds_service.pipeline import Engine

UM = with_results(phenotype_obs("Ultrarapid Metabolizer"))
R4_STU3_OVER = ["entered-in-error", "cancelled", "stopped", "completed"]
DSTU2_OVER = ["entered-in-error", "stopped", "completed"]  # MedicationOrder has no 'cancelled'


def evaluate(knowledge, settings, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The cards and the rendered trace (what ``pgx-cds explain`` and DEBUG logs show)."""
    request = parse_hook_request(body, body["hook"])
    answer, trace = Engine(knowledge, settings).evaluate(request)
    return answer["cards"], trace.render()


def codeine(version: str = "R4", **changes: Any) -> dict[str, Any]:
    order = med_order(APAP_CODEINE, version=version, order_id="rx-1")
    for key, value in changes.items():
        if value is None:
            order.pop(key, None)
        else:
            order[key] = value
    return order


@pytest.mark.parametrize(
    ("version", "status"),
    [("R4", s) for s in R4_STU3_OVER]
    + [("STU3", s) for s in R4_STU3_OVER]
    + [("DSTU2", s) for s in DSTU2_OVER]
    + [("R4", "ended")],  # R5's code for an order that is over
)
@pytest.mark.parametrize("hook", ["order-select", "order-sign", "medication-prescribe"])
def test_order_that_is_over_or_in_error_is_not_judged(knowledge, settings, hook, version, status):
    kind = "MedicationOrder" if version == "DSTU2" else "MedicationRequest"
    body = hook_request(hook, [codeine(version, status=status)], prefetch=UM)
    cards, trace = evaluate(knowledge, settings, body)
    assert cards == []
    assert f"{kind}/rx-1 not judged: status '{status}'" in trace


@pytest.mark.parametrize(
    "reference",
    ["Patient/someone-else", "https://ehr.example.org/fhir/Patient/someone-else"],
)
@pytest.mark.parametrize("version", ["R4", "STU3", "DSTU2"])
def test_order_for_another_patient_is_not_judged(knowledge, settings, version, reference):
    key = "patient" if version == "DSTU2" else "subject"
    order = codeine(version, **{key: {"reference": reference}})
    cards, trace = evaluate(knowledge, settings, hook_request("order-sign", [order], prefetch=UM))
    assert cards == []
    kind = "MedicationOrder" if version == "DSTU2" else "MedicationRequest"
    assert f"{kind}/rx-1 not judged: its {key} is not the patient in context" in trace
    assert "someone-else" not in trace and PATIENT not in trace  # no patient identifiers


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "draft"},
        {"status": "active"},
        {"status": "on-hold"},
        {"status": "unknown"},
        {"status": None},  # no status at all
        {"subject": None},  # the sandbox sends orders without a subject
        {"status": None, "subject": None},
        {"subject": {"reference": f"Patient/{PATIENT}"}},
        {"subject": {"reference": f"https://ehr.example.org/fhir/Patient/{PATIENT}"}},
        {"subject": {"reference": f"Patient/{PATIENT}/_history/3"}},
        {"subject": {"display": "A. Patient"}},  # no reference: says nothing either way
        {"subject": {"reference": "urn:uuid:5f1f3c8e-0b1a-4a3e-9a55-1c1d1e1f1a1b"}},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_draft_active_or_unstated_order_of_this_patient_is_judged(call, hook, changes):
    status, answer = call(hook_request(hook, [codeine(**changes)], prefetch=UM))
    assert status == 200
    [card] = answer["cards"]
    assert card["indicator"] == "critical" and "codeine" in card["summary"].lower()


def test_dstu2_order_of_this_patient_by_absolute_reference_is_judged(call):
    order = codeine(
        "DSTU2", patient={"reference": f"http://ehr.example.org/fhir/Patient/{PATIENT}"}
    )
    status, answer = call(hook_request("order-sign", [order], prefetch=UM))
    assert status == 200 and len(answer["cards"]) == 1


def test_only_the_order_in_error_is_left_out(knowledge, settings):
    good = med_order(APAP_CODEINE, order_id="good")
    bad = med_order(APAP_CODEINE, order_id="bad")
    bad["status"] = "entered-in-error"
    cards, trace = evaluate(
        knowledge, settings, hook_request("order-sign", [bad, good], prefetch=UM)
    )
    [card] = cards
    assert [
        a["resourceId"] for a in card["suggestions"][0]["actions"] if a["type"] == "delete"
    ] == ["MedicationRequest/good"]
    assert "MedicationRequest/bad not judged: status 'entered-in-error'" in trace


def test_another_patients_inhibitor_in_the_session_does_not_phenoconvert(knowledge, settings):
    """Paroxetine (a strong CYP2D6 inhibitor) drafted for someone else must not make this
    normal metabolizer a poor one."""
    paroxetine = med_order(("32937", "paroxetine"), order_id="parox", patient="someone-else")
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE), paroxetine],
        prefetch=with_results(phenotype_obs("Normal Metabolizer")),
        selections=["MedicationRequest/order-1"],
    )
    cards, trace = evaluate(knowledge, settings, body)
    assert cards == []
    assert "MedicationRequest/parox not judged: its subject is not the patient" in trace


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/p1", "p1"),
        ("http://x/fhir/Patient/p1", "p1"),
        ("Patient/p1/_history/2", "p1"),
        (" Patient/p1 ", "p1"),
        ("Group/g1", None),
        ("#contained", None),
        ("urn:uuid:1234", None),
        ("", None),
    ],
)
def test_referenced_patient(reference, expected):
    assert referenced_patient(reference) == expected


def test_a_service_request_is_not_filtered_here():
    order = DraftOrder({"resourceType": "ServiceRequest", "id": "s", "status": "completed"})
    assert not_judged(order, PATIENT) is None
