"""What a prescriber sees for codeine, tramadol and hydrocodone, per CYP2D6 phenotype."""

from __future__ import annotations

import pytest
from builders import (
    APAP_CODEINE,
    HYDROCODONE,
    OXYCODONE,
    TRAMADOL,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)

UM, NM, IM, PM = (
    "Ultrarapid Metabolizer",
    "Normal Metabolizer",
    "Intermediate Metabolizer",
    "Poor Metabolizer",
)

# (drug product, phenotype) -> expected indicator or None for no card (CPIC 2021 Tables 2-4)
EXPECTED = [
    (APAP_CODEINE, "codeine", UM, "critical"),
    (APAP_CODEINE, "codeine", NM, None),
    (APAP_CODEINE, "codeine", IM, "info"),
    (APAP_CODEINE, "codeine", PM, "critical"),
    (TRAMADOL, "tramadol", UM, "critical"),
    (TRAMADOL, "tramadol", NM, None),
    (TRAMADOL, "tramadol", IM, "info"),
    (TRAMADOL, "tramadol", PM, "critical"),
    (HYDROCODONE, "hydrocodone", UM, None),  # CPIC: no recommendation
    (HYDROCODONE, "hydrocodone", NM, None),
    (HYDROCODONE, "hydrocodone", IM, "info"),
    (HYDROCODONE, "hydrocodone", PM, "info"),
]


@pytest.mark.parametrize(("product", "drug", "phenotype", "indicator"), EXPECTED)
def test_card_per_phenotype(call, product, drug, phenotype, indicator):
    body = hook_request(
        "order-select", [med_order(product)], prefetch=with_results(phenotype_obs(phenotype))
    )
    status, answer = call(body)
    assert status == 200
    if indicator is None:
        assert answer == {"cards": []}
        return
    [card] = answer["cards"]
    assert card["indicator"] == indicator
    summary = card["summary"]
    assert len(summary) < 140
    assert drug in summary.lower() and "CYP2D6" in summary and phenotype.lower() in summary.lower()
    assert card["uuid"]
    assert card["source"]["label"] and card["source"]["url"].startswith("https://")
    assert "33387367" in card["detail"]
    assert all(
        link["type"] == "absolute" and link["url"].startswith("https://") for link in card["links"]
    )


@pytest.mark.parametrize("phenotype", [UM, PM])
def test_avoid_cards_offer_a_replacement(call, phenotype):
    """Acetaminophen/codeine 30 mg (4.5 MME): every opioid alternative on file is stronger per
    dose, so the card offers the combination's non-opioid part alone (the acetaminophen
    product closest to the combination's 300 mg), never a stronger opioid and never a
    single-agent opioid that drops the acetaminophen. The new draft comes first, then the
    delete: the public sandbox acts on the first action only."""
    order = med_order(APAP_CODEINE, order_id="rx-77")
    _, answer = call(
        hook_request("order-select", [order], prefetch=with_results(phenotype_obs(phenotype)))
    )
    [card] = answer["cards"]
    assert card["selectionBehavior"] == "at-most-one"
    assert card["overrideReasons"] and all(
        r["display"] and r["system"] for r in card["overrideReasons"]
    )
    assert [s["label"] for s in card["suggestions"]] == [
        "Replace with Acetaminophen 325 MG Oral Tablet alone (set dose); a non-opioid option"
    ]
    assert "Morphine Sulfate 15 MG Oral Tablet is not offered: 15 MME per tablet" in card["detail"]
    for suggestion in card["suggestions"]:
        assert suggestion["uuid"]
        *creates, delete = suggestion["actions"]
        assert delete == {
            "type": "delete",
            "description": delete["description"],
            "resourceId": "MedicationRequest/rx-77",
        }
        assert creates
        for create in creates:
            new = create["resource"]
            assert create["type"] == "create"
            assert new["resourceType"] == "MedicationRequest" and new["status"] == "draft"
            assert new["subject"] == order["subject"]
            assert "codeine" not in new["medicationCodeableConcept"]["text"].lower()
            assert "dosageInstruction" not in new  # doses are not interchangeable
        drugs = [c["resource"]["medicationCodeableConcept"]["text"] for c in creates]
        assert any("Acetaminophen" in d for d in drugs)  # the non-opioid part is kept


def test_opioid_replacements_are_never_stronger_in_mme(call):
    """Tramadol 2 x 50 mg = 20 MME per dose: morphine 15 mg (15 MME) and hydromorphone 2 mg
    (10 MME) may replace it, each with the equivalence stated, plus a non-opioid option."""
    order = med_order(TRAMADOL, order_id="rx-78")
    order["dosageInstruction"] = [
        {"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}]}
    ]
    _, answer = call(
        hook_request("order-select", [order], prefetch=with_results(phenotype_obs(PM)))
    )
    [card] = answer["cards"]
    labels = [s["label"] for s in card["suggestions"]]
    assert any("Morphine" in lb and "15 MME per tablet vs 20 MME" in lb for lb in labels)
    assert any("Hydromorphone" in lb and "10 MME per tablet vs 20 MME" in lb for lb in labels)
    assert any(lb.endswith("a non-opioid option") for lb in labels)
    one_tablet = med_order(TRAMADOL, order_id="rx-79")  # 10 MME: morphine 15 mg is stronger
    _, answer = call(
        hook_request("order-select", [one_tablet], prefetch=with_results(phenotype_obs(PM)))
    )
    labels = [s["label"] for s in answer["cards"][0]["suggestions"]]
    assert not any("Morphine" in lb for lb in labels)


def test_oxycodone_never_alerts(call):
    """CPIC reviewed CYP2D6 with oxycodone and made no recommendation."""
    for phenotype in (UM, PM):
        body = hook_request(
            "order-sign", [med_order(OXYCODONE)], prefetch=with_results(phenotype_obs(phenotype))
        )
        assert call(body) == (200, {"cards": []})


@pytest.mark.parametrize(
    ("diplotype", "indicator", "phenotype"),
    [
        ("*1/*41", None, NM),  # *41 = 0.25 since CPIC 2022: AS 1.25 is normal
        ("*1x2/*2", "critical", UM),  # AS 3
        ("*1/*1x3", "critical", UM),  # *1x3 -> *1x>=3
        ("*2/*2x2", "critical", UM),
        ("*4/*4", "critical", PM),
        ("*4/*41", "info", IM),  # AS 0.25
        ("*1/*4", "info", IM),  # AS 1
        ("CYP2D6 *4/*5", "critical", PM),
    ],
)
def test_diplotypes(call, diplotype, indicator, phenotype):
    body = hook_request(
        "order-select", [med_order(APAP_CODEINE)], prefetch=with_results(genotype_obs(diplotype))
    )
    _, answer = call(body)
    if indicator is None:
        assert answer["cards"] == []
        return
    [card] = answer["cards"]
    assert card["indicator"] == indicator
    assert phenotype.lower() in card["summary"].lower()
    core = diplotype.replace("CYP2D6 ", "")
    assert f"`{core}`" in card["detail"]
    assert "activity score" in card["detail"]


def test_detail_shows_result_recommendation_strength_and_citation(call):
    obs = genotype_obs("*1/*2x2", date="2023-06-15")
    _, answer = call(
        hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=with_results(obs))
    )
    detail = answer["cards"][0]["detail"]
    for expected in (
        "CYP2D6",
        "`*1/*2x2`",
        "activity score 3",
        "Ultrarapid Metabolizer",
        "2023-06-15",
        "strong",
        "Table 2",
        "PMID 33387367",
        "Knowledge version",
    ):
        assert expected in detail


def test_only_the_conflicting_order_gets_a_card(call):
    orders = [med_order(APAP_CODEINE, order_id="a"), med_order(OXYCODONE, order_id="b")]
    _, answer = call(hook_request("order-sign", orders, prefetch=with_results(phenotype_obs(UM))))
    [card] = answer["cards"]
    assert "codeine" in card["summary"]
    assert card["suggestions"][0]["actions"][-1]["resourceId"] == "MedicationRequest/a"
