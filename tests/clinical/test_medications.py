"""Drug identification: RxNorm ingredient and product codes, brands, combinations, text."""

from __future__ import annotations

import pytest
from builders import hook_request, med_order, phenotype_obs, with_results

from cds_service.clinical.medications import identify
from cds_service.fhir.hook_context import DraftOrder

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UM = with_results(phenotype_obs("Ultrarapid Metabolizer"))


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


# -- negated mentions in free text ----------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Codeine-free cough syrup", []),
        ("non-codeine analgesic", []),
        ("oxycodone (not codeine)", ["oxycodone"]),
        ("codeine free", []),
        ("Non codeine pain relief", []),
        ("NOT CODEINE", []),
        ("analgesic without codeine", []),
        ("cough syrup, no codeine", []),
        ("codeine\u2011free linctus", []),  # non-breaking hyphen
        ("non-tramadol, non-codeine analgesic", []),
        ("Tylenol, codeine-free", ["acetaminophen"]),
        ("Celebrex (non-codeine option)", ["celecoxib"]),
    ],
)
def test_negated_mention_names_no_drug(knowledge, text, expected):
    assert drugs_in(knowledge, order(text=text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("codeine 30 mg tablet", ["codeine"]),
        ("acetaminophen/codeine", ["acetaminophen", "codeine"]),
        (
            "Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet",
            ["acetaminophen", "codeine"],
        ),
        ("Tylenol with Codeine No. 3", ["acetaminophen", "codeine"]),
        ("Codeine sulfate, sugar-free oral solution", ["codeine"]),  # 'free' not of codeine
        ("alcohol-free codeine linctus", ["codeine"]),
        ("codeine phosphate (do not crush)", ["codeine"]),
        ("Casino codeine", ["codeine"]),  # 'no' only as a word of its own
        ("Celebrex 200 mg", ["celecoxib"]),
        # a plain mention counts whatever negated one the same text also holds
        ("codeine 30 mg tablet; non-codeine analgesic if not tolerated", ["codeine"]),
    ],
)
def test_plain_mentions_still_name_their_drug(knowledge, text, expected):
    assert drugs_in(knowledge, order(text=text)) == expected


def test_trace_says_a_negated_mention_identifies_no_drug(knowledge):
    found, note = identify(order(text="Codeine-free cough syrup"), knowledge)
    assert found == []
    assert "codeine only in negated form" in note and "no drug identified" in note


def test_a_drug_negated_in_the_text_is_not_taken_from_a_display(knowledge):
    """Text and a (non-RxNorm) coding display disagree: when in doubt, no drug."""
    concept = {
        "text": "non-codeine analgesic",
        "coding": [
            {"system": "http://example.org/formulary", "code": "1", "display": "codeine 30 mg"},
            {"system": "http://example.org/formulary", "code": "2", "display": "ibuprofen"},
        ],
    }
    o = DraftOrder(
        {"resourceType": "MedicationRequest", "id": "x", "medicationCodeableConcept": concept}
    )
    found, note = identify(o, knowledge)
    assert [d.drug for d in found] == ["ibuprofen"]
    assert "codeine only negated: not counted" in note


def _text_order(text: str) -> dict:
    o = med_order(None, order_id="rx-text")
    o["medicationCodeableConcept"] = {"text": text}
    return o


@pytest.mark.parametrize(
    "text",
    [
        "Codeine-free cough syrup",
        "non-codeine analgesic",
        "oxycodone (not codeine)",
        "codeine free",
    ],
)
def test_negated_codeine_text_order_gets_no_avoid_codeine_card(call, text):
    body = hook_request("order-select", [_text_order(text)], prefetch=UM)
    assert call(body) == (200, {"cards": []})


@pytest.mark.parametrize("text", ["codeine 30 mg tablet", "acetaminophen/codeine"])
def test_codeine_text_order_still_gets_its_card(call, text):
    status, answer = call(hook_request("order-select", [_text_order(text)], prefetch=UM))
    assert status == 200
    [card] = answer["cards"]
    assert card["indicator"] == "critical" and card["summary"].startswith("Avoid codeine")


def test_what_was_asked_about_an_ordered_drug_stays_with_that_drug_and_knowledge(knowledge):
    """``cough_cold_product`` is asked twice a call and answered once. A copy made with
    ``dataclasses.replace`` (another order) is asked afresh, and so is another knowledge:
    a remembered answer is never carried to a drug or knowledge it was not worked out for."""
    from dataclasses import replace

    from cds_service.clinical.chart import cough_cold_product
    from cds_service.knowledge.loader import Knowledge
    from cds_service.settings import default_knowledge_dir

    [cough] = [d for d in identify(order(text="Promethazine with codeine syrup"), knowledge)[0]]
    assert cough_cold_product(cough, knowledge) is not None
    assert cough.answers["cough-cold product"][0] is knowledge
    plain = replace(cough, order=order(text="codeine 30 mg tablet"), medication_text="")
    assert plain.answers == {}
    assert cough_cold_product(plain, knowledge) is None
    other = Knowledge(default_knowledge_dir())
    cough.answers["cough-cold product"] = (other, None)  # (as if asked with the other)
    assert cough_cold_product(cough, knowledge) is not None
