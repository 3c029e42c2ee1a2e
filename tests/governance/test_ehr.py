"""Cards shaped for Epic (the site file's ``"ehr": "epic"``): what Epic documents it supports,
and never a suggestion that makes the order riskier on the way."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from builders import APAP_CODEINE, hook_request, med_order, phenotype_obs, with_results

from cds_service.governance.ehr import RXNORM, RXNORM_OID, adapt, epic_topic
from cds_service.web.app import create_app

UM = phenotype_obs("Ultrarapid Metabolizer")
CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")


@pytest.fixture
def epic(tmp_path: Path, settings):
    path = tmp_path / "site.json"
    path.write_text(json.dumps({"ehr": "epic"}))
    return create_app(settings.model_copy(update={"site_config": path}))


def _call(app, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = app.test_client().post("/cds-services/pgx-order-select", json=body)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["cards"]


def test_standard_cards_are_left_as_they_are():
    cards = [{"summary": "x", "suggestions": [{"actions": [{}, {}]}]}]
    assert adapt(cards, "standard") is cards


def test_an_epic_replacement_only_removes_the_draft_and_names_the_alternatives(epic, settings):
    body = hook_request("order-select", [med_order(APAP_CODEINE, order_id="rx-9")])
    body["prefetch"] = with_results(UM)
    standard = _call(create_app(settings), body)[0]
    assert standard["selectionBehavior"] == "at-most-one"
    assert any(len(s["actions"]) == 2 for s in standard["suggestions"])
    alternatives = [
        a["resource"]["medicationCodeableConcept"]["text"]
        for s in standard["suggestions"]
        for a in s["actions"]
        if a["type"] == "create"
    ]

    (card,) = _call(epic, body)
    assert card["selectionBehavior"] == "any"  # Epic: "Only the value "any" is supported"
    (suggestion,) = card["suggestions"]  # one draft: one removal
    (action,) = suggestion["actions"]  # Epic: a single action per suggestion
    assert action["type"] == "delete" and action["resourceId"] == "MedicationRequest/rx-9"
    for name in set(alternatives):
        assert name in action["description"]
    assert suggestion["label"] == action["description"]  # (required, not shown by Epic)
    # what the clinician reads is the same card
    assert card["summary"] == standard["summary"] and card["detail"] == standard["detail"]


def test_epic_topic_codes_are_alphanumeric_and_the_log_keeps_the_service_id(epic):
    body = hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=with_results(UM))
    (card,) = _call(epic, body)
    assert card["source"]["topic"]["code"] == "codeinecyp2d6um"
    (row,) = epic.extensions["pgx"].store.card_log.all()
    assert row["recommendation_id"] == "codeine-cyp2d6-um" and row["card_uuid"] == card["uuid"]


def test_every_epic_topic_code_is_distinct_and_fits(knowledge):
    ids = (
        [r.id for r in knowledge.recommendations]
        + [r.id for r in knowledge.label_rules]
        + [r.id for r in knowledge.unclear_rules]
        + [
            f"{d}-{kind}-{p.test}"
            for d, p in knowledge.pretest.drugs.items()
            for kind in ("pretest", "unclear")
        ]
        + ["patient-view-summary", "patient-view-no-results"]
    )
    topics = [epic_topic(i) for i in ids]
    assert all(re.fullmatch(r"[A-Za-z0-9]{1,100}", t) for t in topics)
    assert len(set(topics)) == len(set(ids))  # two ids never share a topic at Epic


def test_an_epic_card_about_two_drafts_offers_to_remove_each(epic):
    orders = [med_order(APAP_CODEINE, order_id="a"), med_order(APAP_CODEINE, order_id="b")]
    (card,) = _call(epic, hook_request("order-select", orders, prefetch=with_results(UM)))
    removed = [s["actions"][0]["resourceId"] for s in card["suggestions"]]
    assert removed == ["MedicationRequest/a", "MedicationRequest/b"]
    assert all(len(s["actions"]) == 1 for s in card["suggestions"])


def test_the_epic_pre_test_card_keeps_its_single_test_order(epic):
    body = hook_request("order-select", [med_order(CARBAMAZEPINE)], prefetch=with_results())
    (card,) = _call(epic, body)
    (suggestion,) = card["suggestions"]
    (action,) = suggestion["actions"]
    assert action["type"] == "create" and action["resource"]["resourceType"] == "ServiceRequest"
    assert card["selectionBehavior"] == "any"


def test_a_dose_suggestion_at_epic_removes_the_draft_and_gives_the_dose():
    card = {
        "source": {"topic": {"code": "amitriptyline-cyp2d6-im"}},
        "selectionBehavior": "at-most-one",
        "suggestions": [
            {
                "label": "Replace with amitriptyline 10 MG Oral Tablet twice daily (20 mg/day)",
                "actions": [
                    {
                        "type": "delete",
                        "description": "Remove the draft amitriptyline order",
                        "resourceId": "MedicationRequest/rx-1",
                    },
                    {
                        "type": "create",
                        "description": "Add a draft order",
                        "resource": {
                            "resourceType": "MedicationRequest",
                            "medicationCodeableConcept": {
                                "text": "amitriptyline 10 MG Oral Tablet",
                                "coding": [{"system": RXNORM, "code": "856845"}],
                            },
                            "dosageInstruction": [{"text": "1 tablet twice daily (20 mg/day)"}],
                        },
                    },
                ],
            }
        ],
    }
    (adapted,) = adapt([card], "epic")
    (suggestion,) = adapted["suggestions"]
    (action,) = suggestion["actions"]
    assert action["type"] == "delete"
    assert (
        "amitriptyline 10 MG Oral Tablet, 1 tablet twice daily (20 mg/day)" in action["description"]
    )
    assert card["suggestions"][0]["actions"][1]["type"] == "create"  # (the original untouched)


def test_a_single_created_order_at_epic_names_rxnorm_by_its_oid():
    card = {
        "suggestions": [
            {
                "label": "Add",
                "actions": [
                    {
                        "type": "create",
                        "resource": {
                            "resourceType": "MedicationRequest",
                            "medicationCodeableConcept": {
                                "coding": [{"system": RXNORM, "code": "161"}]
                            },
                        },
                    }
                ],
            }
        ],
        "selectionBehavior": "at-most-one",
    }
    (adapted,) = adapt([card], "epic")
    coding = adapted["suggestions"][0]["actions"][0]["resource"]["medicationCodeableConcept"]
    assert coding["coding"][0]["system"] == RXNORM_OID == "urn:oid:2.16.840.1.113883.6.88"


def test_a_card_without_suggestions_gets_no_selection_behavior_at_epic():
    (adapted,) = adapt([{"summary": "s", "source": {"topic": {"code": "x-y"}}}], "epic")
    assert "selectionBehavior" not in adapted and "suggestions" not in adapted
