"""Drug identification: RxNorm ingredient and product codes, brands, combinations, text."""

from __future__ import annotations

import pytest

from cds_service.hook_context import DraftOrder
from cds_service.medications import identify

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def order(code: str | None = None, text: str | None = None, system: str = RXNORM) -> DraftOrder:
    concept: dict = {}
    if code:
        concept["coding"] = [{"system": system, "code": code}]
    if text:
        concept["text"] = text
    return DraftOrder(
        {"resourceType": "MedicationRequest", "id": "x", "medicationCodeableConcept": concept}
    )


def drugs_in(knowledge, o: DraftOrder) -> list[str]:
    return [d.drug for d in identify(o, knowledge)[0]]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("2670", ["codeine"]),  # ingredient
        ("993781", ["acetaminophen", "codeine"]),  # acetaminophen/codeine SCD
        ("836397", ["acetaminophen", "tramadol"]),  # Ultracet SBD
        ("857005", ["acetaminophen", "hydrocodone"]),
        ("205323", ["celecoxib"]),  # SCD
        ("213469", ["celecoxib"]),  # Celebrex SBD
        ("152695", ["meloxicam"]),
        ("308979", ["carbamazepine"]),
        ("312136", ["oxcarbazepine"]),
        ("198045", ["nortriptyline"]),
        ("313582", ["venlafaxine"]),
        ("704", ["amitriptyline"]),
    ],
)
def test_rxnorm_codes(knowledge, code, expected):
    assert drugs_in(knowledge, order(code)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Celebrex 200 mg", ["celecoxib"]),
        ("Tegretol XR 200", ["carbamazepine"]),
        ("Tylenol with Codeine #3", ["acetaminophen", "codeine"]),
        ("Norco 5/325", ["hydrocodone"]),
        ("Trileptal", ["oxcarbazepine"]),
        ("Dihydrocodeine 30 mg", ["dihydrocodeine"]),  # its own FDA label, never codeine
        ("vitamin D", []),
    ],
)
def test_brand_and_text_fallback(knowledge, text, expected):
    assert drugs_in(knowledge, order(text=text)) == expected


def test_unknown_rxnorm_code_falls_back_to_text(knowledge):
    assert drugs_in(knowledge, order("999999999", "celecoxib 50 mg capsule")) == ["celecoxib"]


def test_known_code_wins_over_misleading_text(knowledge):
    assert drugs_in(knowledge, order("205323", "codeine")) == ["celecoxib"]


def test_non_rxnorm_code_is_not_read_as_rxnorm(knowledge):
    assert drugs_in(knowledge, order("2670", system="http://snomed.info/sct")) == []


def test_every_covered_drug_has_codes_and_is_identified(knowledge):
    for name, drug in knowledge.drugs.items():
        if drug.rxcui is None:  # not in RxNorm (lumiracoxib): identified by its name
            assert name in drugs_in(knowledge, order("0", name)), name
            continue
        assert name in drugs_in(knowledge, order(drug.rxcui)), name
