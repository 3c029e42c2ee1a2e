"""Card shape rules that hold for every card the service builds (CDS Hooks 2.0.1, Card)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from builders import genotype_obs, hook_request, med_order, with_results

from cds_service.clinical import cards, label_rules
from cds_service.clinical.medications import IdentifiedDrug
from cds_service.clinical.recommendations import Match
from cds_service.core.trace import Trace
from cds_service.fhir.hook_context import DraftOrder
from cds_service.genomics.gene_decision import GeneResult
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.models import Recommendation

CELECOXIB = ("205323", "celecoxib 200 MG Oral Capsule")
IBUPROFEN_800 = ("197807", "Ibuprofen 800 MG Oral Tablet")
CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")
OXCARBAZEPINE = ("312136", "oxcarbazepine 150 MG Oral Tablet")


def assert_selection_behavior(card: dict[str, Any]) -> None:
    """'If suggestions are present, selectionBehavior MUST also be provided'; ours are
    alternatives to one another, so 'at-most-one'. No suggestions, no selectionBehavior."""
    if "suggestions" in card:
        assert card["suggestions"], card["summary"]
        assert card.get("selectionBehavior") == "at-most-one", card["summary"]
    else:
        assert "selectionBehavior" not in card, card["summary"]


def twice_daily(product: tuple[str, str]) -> dict[str, Any]:
    """One tablet or capsule twice a day: a dose a replacement can keep the interval of."""
    order = med_order(product)
    order["dosageInstruction"][0]["timing"] = {
        "repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}
    }
    return order


# -- the reviewer's cases, through the service ---------------------------------------------
@pytest.mark.parametrize(
    ("order", "results"),
    [
        (twice_daily(CELECOXIB), [genotype_obs("*3/*3", gene="CYP2C9")]),  # dose suggestion
        (twice_daily(IBUPROFEN_800), [genotype_obs("*3/*3", gene="CYP2C9")]),
        (med_order(CARBAMAZEPINE), []),  # pre-test card: order the HLA-B*15:02 test
        (med_order(OXCARBAZEPINE), []),
    ],
    ids=["celecoxib-cyp2c9-pm", "ibuprofen-cyp2c9-pm", "carbamazepine-untested", "oxcarb"],
)
@pytest.mark.parametrize("hook", ["order-select", "order-sign", "medication-prescribe"])
def test_a_card_with_one_suggestion_says_how_to_select_it(call, hook, order, results):
    status, answer = call(hook_request(hook, [order], prefetch=with_results(*results)))
    assert status == 200
    [card] = answer["cards"]
    assert len(card["suggestions"]) == 1
    assert card["selectionBehavior"] == "at-most-one"


def test_a_cards_uuid_is_time_ordered_and_its_suggestions_random(call):
    """A card's uuid keys the card log (version 7: cards logged together are stored
    together); a suggestion's stays version 4. Both are uuids the EHR can echo back."""
    order = twice_daily(CELECOXIB)
    _, answer = call(
        hook_request(
            "order-select", [order], prefetch=with_results(genotype_obs("*3/*3", gene="CYP2C9"))
        )
    )
    [card] = answer["cards"]
    assert uuid.UUID(card["uuid"]).version == 7
    assert [uuid.UUID(s["uuid"]).version for s in card["suggestions"]] == [4]


# -- every card the knowledge can give -------------------------------------------------------
def _product(knowledge: Knowledge, drug: str) -> tuple[str, str]:
    """A single-ingredient product of ``drug`` with its strength in the name, if one is on
    file (dose suggestions need it), else the ingredient."""
    for rxcui, name in sorted(knowledge.product_names.items()):
        if knowledge.products.get(rxcui) == frozenset({drug}) and re.search(r"\d MG\b", name):
            return rxcui, name
    return knowledge.drugs[drug].rxcui or "0", drug


def _result(gene: str, rec: Recommendation) -> GeneResult:
    cond = rec.when[gene]
    return GeneResult(
        gene=gene,
        phenotype=cond.phenotype or "Intermediate Metabolizer",
        observation="Observation/x",
        kind="genotype",
        activity_score=cond.activity_score_min,
    )


def _order(rxcui: str, name: str, order_id: str | None, version: str = "R4") -> DraftOrder:
    resource = med_order((rxcui, name), order_id=order_id or "x", version=version)
    if order_id is None:
        del resource["id"]
    if version == "R4":  # a stated dose: the tricyclic dose rows compute from it
        resource["dosageInstruction"][0]["timing"] = {
            "repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}
        }
    return DraftOrder(resource)


def _cards_for(rec: Recommendation, knowledge: Knowledge) -> list[dict[str, Any]]:
    rxcui, name = _product(knowledge, rec.drug)
    results = tuple(_result(g, rec) for g in rec.when)
    other = next((r for r in knowledge.recommendations_for(rec.drug) if r.id != rec.id), rec)
    built: list[dict[str, Any]] = []
    for version in ("R4", "STU3", "DSTU2"):
        for order_ids in (["o1"], ["o1", "o2"], [None]):
            orders = [_order(rxcui, name, i, version) for i in order_ids]
            matches = [
                label_rules.with_dose(
                    Match(IdentifiedDrug(rec.drug, o, f"RxNorm {rxcui}", name), rec, results),
                    knowledge,
                    Trace(),
                )
                for o in orders
            ]
            built += [c.body for c in cards.build_cards(matches, knowledge)]
            low = [replace(m, low_dose=True) for m in matches]
            built += [c.body for c in cards.build_cards(low, knowledge)]
            spans = [replace(m, possible=(rec, other)) for m in matches]
            built += [c.body for c in cards.build_cards(spans, knowledge)]
    return built


def _notice_cards(knowledge: Knowledge) -> list[dict[str, Any]]:
    """Pre-test cards (all switched on) and age-rule cards for a child after tonsillectomy."""
    drugs = [
        IdentifiedDrug(drug, _order(*_product(knowledge, drug), "o1"), "RxNorm", drug)
        for drug in sorted({*knowledge.pretest.drugs, *(r.drug for r in knowledge.label_rules)})
    ]
    for d in drugs:
        d.order.resource["reasonCode"] = [{"text": "after tonsillectomy and adenoidectomy"}]
    notices = label_rules.pretest(
        drugs, {}, knowledge, frozenset(knowledge.pretest.drugs), Trace()
    ) + label_rules.age_rules(drugs, {"birthDate": "2022-01-01"}, knowledge, Trace())
    return [c.body for c in cards.build_cards([], knowledge, notices)]


def test_every_card_with_suggestions_has_selection_behavior(knowledge):
    built = _notice_cards(knowledge)
    for rec in knowledge.recommendations:
        if cards.indicator(rec) is not None:
            built += _cards_for(rec, knowledge)
    for card in built:
        assert_selection_behavior(card)
    # the walk reaches every kind: no suggestion, one (dose, test), several (alternatives)
    counts = {len(c.get("suggestions", [])) for c in built}
    assert {0, 1} <= counts and max(counts) > 1
    assert any(
        a["resource"]["resourceType"] == "ServiceRequest"
        for c in built
        for s in c.get("suggestions", [])
        for a in s["actions"]
        if a["type"] == "create"
    )
    assert any(s["label"].endswith("mg/day)") for c in built for s in c.get("suggestions", []))


SANDBOX_REQUESTS = sorted(
    p
    for p in (Path(__file__).resolve().parents[2] / "sandbox" / "requests").glob("*.json")
    if p.name != "expected.json"
)


@pytest.mark.parametrize("path", SANDBOX_REQUESTS, ids=lambda p: p.name)
def test_sandbox_requests_cards_have_selection_behavior_with_suggestions(call, path):
    status, answer = call(json.loads(path.read_text()))
    assert status == 200
    for card in answer["cards"]:
        assert_selection_behavior(card)
