"""Continuing therapy: an HLA-B*15:02 carrier who has taken carbamazepine or oxcarbazepine for
more than three months gets CPIC's cautious "may continue" as a warning, read from the
medication history; a new or recent start, or an unknown start, keeps the critical card
(issue 22, item 7)."""

from __future__ import annotations

from typing import Any

import pytest
from builders import (
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
from cds_service.pipeline import Engine

CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")
OXCARBAZEPINE = ("312137", "oxcarbazepine 300 MG Oral Tablet")
CARRIER = genotype_obs("HLA-B*15:02:01+HLA-B*07:02:01", "HLA-B", obs_id="hla-b")
A3101_NEGATIVE = genotype_obs("HLA-A*02:01:01+HLA-A*24:02:01", "HLA-A", obs_id="hla-a")
A3101_CARRIER = genotype_obs("HLA-A*31:01:02+HLA-A*24:02:01", "HLA-A", obs_id="hla-a")
NON_CARRIER = genotype_obs("HLA-B*07:02:01+HLA-B*44:03:01", "HLA-B", obs_id="hla-b")


def on_file(product: tuple[str, str], started: str | None, status: str = "active") -> dict:
    order = med_order(product, order_id="on-file")
    order["status"] = status
    if started is None:
        del order["authoredOn"]
    else:
        order["authoredOn"] = started
    return order


def evaluate(
    knowledge,
    settings,
    *,
    orders: list[dict] | None = None,
    statements: list[dict] | None = None,
    results: tuple[dict, ...] = (CARRIER,),
    ordered: tuple[str, str] = CARBAMAZEPINE,
    history: bool = True,
) -> tuple[list[dict[str, Any]], str]:
    prefetch: dict[str, Any] = {**with_results(*results), "patient": None}
    if history:
        prefetch["activeMedications"] = bundle(*(orders or []))
        prefetch["medicationStatements"] = bundle(*(statements or []))
    renewal = med_order(ordered, order_id="renewal")
    body = hook_request("order-select", [renewal], prefetch=prefetch)
    answer, trace = Engine(knowledge, settings).evaluate(parse_hook_request(body, body["hook"]))
    return answer["cards"], trace.render()


def test_carbamazepine_taken_for_more_than_three_months_gets_a_warning(knowledge, settings):
    started = days_ago(200)
    cards, trace = evaluate(knowledge, settings, orders=[on_file(CARBAMAZEPINE, started)])
    [card] = cards
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Carbamazepine: continue cautiously (taken over 3 months)")
    assert card["source"]["topic"]["code"] == "carbamazepine-hlab1502-pos-continuing"
    detail = shown(card["detail"])
    assert "(CPIC, optional)" in detail and "cautious continued use may be considered" in detail
    assert f"carbamazepine on the medication record since {started}" in detail
    assert "MedicationRequest/on-file" in detail
    assert "replaces the advice for a new start" in trace
    assert "suggestions" not in card  # nothing to replace: the patient continues


def test_carbamazepine_started_ten_days_ago_still_gets_the_critical_card(knowledge, settings):
    started = days_ago(10)
    cards, trace = evaluate(knowledge, settings, orders=[on_file(CARBAMAZEPINE, started)])
    [card] = cards
    assert card["indicator"] == "critical" and card["summary"].startswith("Avoid carbamazepine")
    assert f"since {started}" in shown(card["detail"])
    assert "not more than 90; the advice for a new start stands" in trace


def test_an_unknown_start_keeps_the_critical_card_and_explain_says_why(knowledge, settings):
    cards, trace = evaluate(knowledge, settings, orders=[on_file(CARBAMAZEPINE, None)])
    [card] = cards
    assert card["indicator"] == "critical"
    assert "with no start date" in shown(card["detail"])
    assert "states no start, so more than 90 days of use cannot be shown" in trace


def test_no_record_on_file_is_a_new_start(knowledge, settings):
    cards, trace = evaluate(knowledge, settings)
    [card] = cards
    assert card["indicator"] == "critical"
    assert "Medication history" not in card["detail"]
    assert "no record on file shows carbamazepine taken for more than 90 days" in trace


def test_without_a_medication_history_the_critical_card_stands(knowledge, settings):
    cards, trace = evaluate(knowledge, settings, history=False)
    [card] = cards
    assert card["indicator"] == "critical"
    assert "the medication history could not be read" in trace


@pytest.mark.parametrize("status", ["on-hold", "stopped"])
def test_only_an_active_record_is_continuing_therapy(knowledge, settings, status):
    cards, _ = evaluate(knowledge, settings, orders=[on_file(CARBAMAZEPINE, days_ago(400), status)])
    [card] = cards
    assert card["indicator"] == "critical"


def test_a_long_standing_home_medication_statement_counts(knowledge, settings):
    statement = med_statement(CARBAMAZEPINE, effectivePeriod={"start": "2024-03"})
    [card] = evaluate(knowledge, settings, statements=[statement])[0]
    assert card["indicator"] == "warning"
    assert "since 2024-03 (MedicationStatement/stmt-1)" in shown(card["detail"])


def test_the_two_allele_row_is_continued_too(knowledge, settings):
    cards, _ = evaluate(
        knowledge,
        settings,
        orders=[on_file(CARBAMAZEPINE, days_ago(120))],
        results=(CARRIER, A3101_NEGATIVE),
    )
    [card] = cards
    assert card["source"]["topic"]["code"] == "carbamazepine-hlab1502-pos-hlaa3101-neg-continuing"
    assert card["indicator"] == "warning"


def test_an_hla_a3101_carrier_continuing_carbamazepine_gets_the_warning(knowledge, settings):
    cards, _ = evaluate(
        knowledge,
        settings,
        orders=[on_file(CARBAMAZEPINE, days_ago(120))],
        results=(NON_CARRIER, A3101_CARRIER),
    )
    [card] = cards
    assert card["source"]["topic"]["code"] == "carbamazepine-hlab1502-neg-hlaa3101-pos-continuing"
    assert card["indicator"] == "warning"


def test_oxcarbazepine_taken_for_more_than_three_months_gets_a_warning(knowledge, settings):
    [card] = evaluate(
        knowledge,
        settings,
        orders=[on_file(OXCARBAZEPINE, days_ago(95))],
        ordered=OXCARBAZEPINE,
    )[0]
    assert card["indicator"] == "warning"
    assert card["source"]["topic"]["code"] == "oxcarbazepine-hlab1502-pos-continuing"


def test_another_drugs_history_does_not_continue_this_one(knowledge, settings):
    [card] = evaluate(knowledge, settings, orders=[on_file(OXCARBAZEPINE, days_ago(400))])[0]
    assert card["indicator"] == "critical"  # carbamazepine ordered, oxcarbazepine on file


def test_a_non_carrier_gets_no_card_whatever_the_history(knowledge, settings):
    cards, _ = evaluate(
        knowledge,
        settings,
        orders=[on_file(CARBAMAZEPINE, days_ago(400))],
        results=(NON_CARRIER, A3101_NEGATIVE),
    )
    assert cards == []


def test_continuing_therapy_rows_are_data_with_their_source(knowledge):
    rows = [r for r in knowledge.recommendations if r.continuing_over_days]
    pmids = {  # CPIC HLA/carbamazepine 2017, CPIC phenytoin 2020
        "carbamazepine": "29392710",
        "oxcarbazepine": "29392710",
        "phenytoin": "32779747",
        "fosphenytoin": "32779747",
    }
    assert {r.drug for r in rows} == set(pmids)
    for row in rows:
        assert row.continuing_over_days == 90
        assert row.strength == "optional" and row.indicator == "warning"
        assert row.guideline is not None and row.guideline.pmid == pmids[row.drug]
        base = [
            r
            for r in knowledge.recommendations_for(row.drug)
            if r.when == row.when and not r.continuing_over_days
        ]
        assert [b.action for b in base] == ["avoid"]


def test_a_continuing_row_without_the_row_it_continues_fails_the_knowledge_check(
    knowledge, tmp_path
):
    import json
    import shutil

    from cds_service.knowledge.loader import Knowledge, KnowledgeError

    copy = tmp_path / "knowledge"
    shutil.copytree(knowledge.directory, copy)
    path = copy / "recommendations" / "cpic-hla-anticonvulsants-2017.json"
    doc = json.loads(path.read_text())
    doc["recommendations"] = [
        r for r in doc["recommendations"] if r["id"] != "oxcarbazepine-hlab1502-pos"
    ]
    path.write_text(json.dumps(doc))
    with pytest.raises(KnowledgeError, match="continuing-therapy row needs the row it continues"):
        Knowledge(copy)


def test_the_patient_view_tells_the_same_story(call):
    """Chart opened for a carrier who has taken carbamazepine for months: the summary lists
    it as the renewal's card would (continue cautiously), oxcarbazepine as avoid."""
    from test_patient_view import rows, view_request

    prefetch = {
        **with_results(CARRIER),
        "activeMedications": bundle(on_file(CARBAMAZEPINE, days_ago(200))),
        "medicationStatements": bundle(),
        "patient": None,
    }
    status, answer = call(view_request(prefetch))
    assert status == 200
    advice = rows(answer["cards"][0]["detail"])
    assert advice["carbamazepine"].startswith("**Continue cautiously (taken over 3 months)**")
    assert advice["oxcarbazepine"].startswith("**Avoid**")
