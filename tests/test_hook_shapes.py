"""Hook contexts as real clients send them: R4, STU3, DSTU2, Bundles, arrays, sandbox quirks."""

from __future__ import annotations

import pytest
from builders import APAP_CODEINE, OXYCODONE, hook_request, med_order, phenotype_obs, with_results

UM = with_results(phenotype_obs("Ultrarapid Metabolizer"))


@pytest.mark.parametrize("hook", ["order-select", "order-sign", "medication-prescribe"])
@pytest.mark.parametrize("version", ["R4", "STU3", "DSTU2"])
@pytest.mark.parametrize("as_array", [False, True])
def test_every_hook_version_and_container(call, hook, version, as_array):
    order = med_order(APAP_CODEINE, version=version, order_id="o1")
    status, answer = call(hook_request(hook, [order], prefetch=UM, as_array=as_array))
    assert status == 200
    [card] = answer["cards"]
    assert card["indicator"] == "critical"
    create, delete = card["suggestions"][0]["actions"]  # the new draft first (public sandbox)
    create = create["resource"]
    expected_type = "MedicationOrder" if version == "DSTU2" else "MedicationRequest"
    assert create["resourceType"] == expected_type
    assert delete["resourceId"] == f"{expected_type}/o1"
    if version == "DSTU2":
        assert create["patient"] == order["patient"] and "subject" not in create
    else:
        assert create["subject"] == order["subject"] and create["intent"] == "order"


def test_order_select_judges_only_the_selected_orders(call):
    orders = [med_order(OXYCODONE, order_id="first"), med_order(APAP_CODEINE, order_id="second")]
    body = hook_request("order-select", orders, prefetch=UM, selections=["MedicationRequest/first"])
    assert call(body) == (200, {"cards": []})
    body = hook_request(
        "order-select", orders, prefetch=UM, selections=["MedicationRequest/second"]
    )
    assert len(call(body)[1]["cards"]) == 1


def test_single_selection_string_is_tolerated(call):
    body = hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=UM)
    body["context"]["selections"] = "MedicationRequest/order-1"
    assert len(call(body)[1]["cards"]) == 1


def test_lone_resource_instead_of_bundle_is_tolerated(call):
    body = hook_request("order-sign", [med_order(APAP_CODEINE)], prefetch=UM)
    body["context"]["draftOrders"] = med_order(APAP_CODEINE)
    assert len(call(body)[1]["cards"]) == 1


def test_order_without_medication_code_gives_no_card(call):
    """The sandbox sends the order before a drug is picked."""
    assert call(hook_request("order-select", [med_order(None)], prefetch=UM)) == (
        200,
        {"cards": []},
    )


def test_context_with_only_patient_and_user(call):
    """The sandbox re-fires order-select with only patientId and userId."""
    body = {
        "hook": "order-select",
        "hookInstance": "abc",
        "context": {"patientId": "pat-1", "userId": "Practitioner/1"},
    }
    assert call(body) == (200, {"cards": []})


def test_imaging_order_gives_empty_cards(call):
    imaging = {
        "resourceType": "ServiceRequest",
        "id": "img-1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/pat-1"},
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "70450"}]},
    }
    procedure = {
        "resourceType": "ProcedureRequest",
        "id": "proc-1",
        "status": "draft",
        "subject": {"reference": "Patient/pat-1"},
    }
    body = hook_request("order-select", [imaging, procedure])  # no prefetch, no fhirServer: no 412
    assert call(body) == (200, {"cards": []})


def test_text_only_medication_is_identified(call):
    order = med_order(None)
    order["medicationCodeableConcept"] = {"text": "Tylenol with Codeine #3"}
    _, answer = call(hook_request("order-sign", [order], prefetch=UM))
    [card] = answer["cards"]
    assert "codeine" in card["summary"]


def test_medication_in_contained_resource(call):
    order = med_order(None)
    order["contained"] = [
        {
            "resourceType": "Medication",
            "id": "med",
            "code": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "2670"}
                ]
            },
        }
    ]
    order["medicationReference"] = {"reference": "#med"}
    assert len(call(hook_request("order-sign", [order], prefetch=UM))[1]["cards"]) == 1


def test_unknown_drug_gets_no_card(call):
    amoxicillin = med_order(("617993", "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML"))
    assert call(hook_request("order-sign", [amoxicillin], prefetch=UM)) == (200, {"cards": []})


def test_dihydrocodeine_is_not_codeine(call):
    product = (
        "1190201",
        "acetaminophen 320.5 MG / caffeine 30 MG / dihydrocodeine bitartrate 16 MG Oral Capsule",
    )
    status, answer = call(hook_request("order-sign", [med_order(product)], prefetch=UM))
    assert status == 200
    [card] = answer["cards"]  # the FDA label's dihydrocodeine card, never CPIC's codeine one
    assert card["source"]["topic"]["code"] == "dihydrocodeine-cyp2d6-um"
    assert "dihydrocodeine" in card["summary"] and "codeine-" not in card["summary"]
    assert card["indicator"] == "warning" and "FDA" in card["source"]["label"]
