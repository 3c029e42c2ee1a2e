"""CPIC's answer for each covered pain drug, per phenotype or activity score (issue: complete
pain knowledge). Silent pairs stay silent; cards name drug and gene with the right severity."""

from __future__ import annotations

import pytest
from builders import (
    LOINC,
    gene_component,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)

CELECOXIB = ("205323", "celecoxib 200 MG Oral Capsule")
IBUPROFEN = ("197805", "Ibuprofen 400 MG Oral Tablet")
MELOXICAM = ("152695", "meloxicam 15 MG Oral Tablet")
PIROXICAM = ("8356", "piroxicam")
PIROXICAM_20 = ("198108", "Piroxicam 20 MG Oral Capsule")
TENOXICAM = ("37790", "tenoxicam")
FLURBIPROFEN = ("4502", "flurbiprofen")
LORNOXICAM = ("20890", "lornoxicam")
NAPROXEN = ("198014", "Naproxen 500 MG Oral Tablet")
DICLOFENAC = ("3355", "diclofenac")
ASPIRIN = ("1191", "aspirin")
NORTRIPTYLINE = ("198045", "Nortriptyline 10 MG Oral Capsule")
AMITRIPTYLINE = ("704", "amitriptyline")
VENLAFAXINE = ("313582", "venlafaxine 25 MG Oral Tablet")
DULOXETINE = ("72625", "duloxetine")
CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")
OXCARBAZEPINE = ("312136", "oxcarbazepine 150 MG Oral Tablet")
MORPHINE = ("892582", "Morphine Sulfate 15 MG Oral Tablet")

UM, RM, NM, IM, PM = (
    "Ultrarapid Metabolizer",
    "Rapid Metabolizer",
    "Normal Metabolizer",
    "Intermediate Metabolizer",
    "Poor Metabolizer",
)

# CYP2C9 diplotype -> activity score: *1/*1 2, *1/*2 1.5, *1/*3 1, *2/*3 0.5, *3/*3 0
CYP2C9_BY_SCORE = {2.0: "*1/*1", 1.5: "*1/*2", 1.0: "*1/*3", 0.5: "*2/*3", 0.0: "*3/*3"}


def cards(call, product, *observations):
    """The cards for an order of ``product`` (a (code, name) pair, or an order already built)."""
    order = product if isinstance(product, dict) else med_order(product)
    status, answer = call(hook_request("order-sign", [order], prefetch=with_results(*observations)))
    assert status == 200
    return answer["cards"]


def indicator_of(call, product, *observations):
    found = cards(call, product, *observations)
    assert len(found) <= 1, [c["summary"] for c in found]
    return found[0]["indicator"] if found else None


# -- NSAIDs and CYP2C9 (CPIC 2020), keyed by activity score ---------------------------------

NSAID_EXPECTED = {
    # drug: {AS: indicator}
    "celecoxib": {2.0: None, 1.5: None, 1.0: "warning", 0.5: "warning", 0.0: "warning"},
    "ibuprofen": {2.0: None, 1.5: None, 1.0: "warning", 0.5: "warning", 0.0: "warning"},
    "flurbiprofen": {2.0: None, 1.5: None, 1.0: "warning", 0.5: "warning", 0.0: "warning"},
    "lornoxicam": {2.0: None, 1.5: None, 1.0: "warning", 0.5: "warning", 0.0: "warning"},
    "meloxicam": {2.0: None, 1.5: None, 1.0: "warning", 0.5: "warning", 0.0: "warning"},
    "piroxicam": {2.0: None, 1.5: None, 1.0: "warning", 0.5: "warning", 0.0: "warning"},
    "tenoxicam": {2.0: None, 1.5: None, 1.0: "warning", 0.5: "warning", 0.0: "warning"},
}
PRODUCTS = {
    "celecoxib": CELECOXIB,
    "ibuprofen": IBUPROFEN,
    "flurbiprofen": FLURBIPROFEN,
    "lornoxicam": LORNOXICAM,
    "meloxicam": MELOXICAM,
    "piroxicam": PIROXICAM,
    "tenoxicam": TENOXICAM,
}


@pytest.mark.parametrize(
    ("drug", "score"), [(d, s) for d, by in NSAID_EXPECTED.items() for s in by]
)
def test_nsaid_by_cyp2c9_activity_score(call, drug, score):
    obs = genotype_obs(CYP2C9_BY_SCORE[score], gene="CYP2C9")
    found = cards(call, PRODUCTS[drug], obs)
    expected = NSAID_EXPECTED[drug][score]
    if expected is None:
        assert found == []
        return
    [card] = found
    assert card["indicator"] == expected
    assert drug in card["summary"].lower() and "CYP2C9" in card["summary"]
    assert "32189324" in card["detail"]
    assert f"activity score {score:g}" in card["detail"]


def test_meloxicam_differs_from_celecoxib_at_score_1(call):
    obs = genotype_obs("*1/*3", gene="CYP2C9")
    [celecoxib] = cards(call, CELECOXIB, obs)
    [meloxicam] = cards(call, MELOXICAM, obs)
    assert "lowest recommended dose" in celecoxib["detail"]
    assert "half of the lowest" in meloxicam["detail"]
    assert celecoxib["summary"].startswith("Adjust") and meloxicam["summary"].startswith("Adjust")


def test_piroxicam_calls_for_an_alternative_with_a_suggestion(call):
    [card] = cards(call, PIROXICAM_20, genotype_obs("*1/*3", gene="CYP2C9"))
    assert card["summary"].startswith("Consider an alternative to piroxicam")
    assert "naproxen" in card["suggestions"][0]["label"].lower()


def test_an_order_of_the_ingredient_alone_gets_no_one_click_replacement_and_says_why(call):
    """'piroxicam' (the ingredient's code) could be a capsule or a gel: no route to keep."""
    [card] = cards(call, PIROXICAM, genotype_obs("*1/*3", gene="CYP2C9"))
    assert card["summary"].startswith("Consider an alternative to piroxicam")
    assert "suggestions" not in card
    assert (
        "No one-click replacement: the order's code names the drug without a dose form"
        in (card["detail"])
    )


def test_celecoxib_poor_metabolizer_says_25_to_50_percent(call):
    order = med_order(CELECOXIB)
    order["dosageInstruction"][0]["text"] = "1 capsule by mouth twice daily"
    [card] = cards(call, order, genotype_obs("*3/*3", gene="CYP2C9"))
    assert "25-50%" in card["detail"] or "25–50%" in card["detail"]
    # a dose change: the only suggestion is celecoxib itself at the adjusted dose, same interval
    assert [s["label"] for s in card["suggestions"]] == [
        "Replace with celecoxib 50 MG Oral Capsule: 1 capsule twice a day (100 mg/day; "
        "CPIC: about 50–100 mg/day)"
    ]


@pytest.mark.parametrize("product", [NAPROXEN, DICLOFENAC, ASPIRIN])
def test_nsaids_without_actionable_recommendation_never_alert(call, product):
    assert cards(call, product, genotype_obs("*3/*3", gene="CYP2C9")) == []


def test_cyp2c9_phenotype_without_score(call):
    """A reported poor metabolizer (AS 0-0.5) is enough; a reported intermediate (AS 1 or
    1.5, which CPIC treats differently) is never silent: one card gives both readings."""
    pm = phenotype_obs(PM, gene="CYP2C9")
    assert indicator_of(call, CELECOXIB, pm) == "warning"
    im = phenotype_obs(IM, gene="CYP2C9")
    [card] = cards(call, CELECOXIB, im)
    assert card["indicator"] == "warning"
    assert "depends on the activity score" in card["summary"]
    detail = card["detail"]
    assert detail.index("If activity score 1:") < detail.index("If activity score 1.5:")
    assert "genotype" in card["detail"] and "suggestions" not in card


def test_gene_specific_cyp2c9_phenotype_code(call):
    obs = phenotype_obs(PM, gene="CYP2C9")
    obs["code"] = {"coding": [{"system": LOINC, "code": "79716-7"}]}
    obs.pop("component")
    assert indicator_of(call, MELOXICAM, obs) == "warning"


# -- Tricyclics (CPIC 2016) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("diplotype", "indicator"),
    [
        ("*1/*1x2", "critical"),  # UM: avoid, strong
        ("*1/*1", None),
        ("*4/*41", "warning"),  # IM, AS 0.25: reduce dose, moderate
        ("*1/*4", "warning"),  # IM, AS 1: reduce dose, optional
        ("*4/*4", "critical"),  # PM: avoid, strong
    ],
)
def test_nortriptyline_cyp2d6(call, diplotype, indicator):
    found = cards(call, NORTRIPTYLINE, genotype_obs(diplotype))
    assert (found[0]["indicator"] if found else None) == indicator
    if found:
        assert "neuropathic pain" in found[0]["detail"]


def test_nortriptyline_im_strength_differs_by_score(call):
    [low] = cards(call, NORTRIPTYLINE, genotype_obs("*4/*41"))
    [high] = cards(call, NORTRIPTYLINE, genotype_obs("*1/*4"))
    assert "(CPIC, moderate)" in low["detail"] and "(CPIC, optional)" in high["detail"]


def test_amitriptyline_uses_both_genes_in_one_card(call):
    d6 = genotype_obs("*1/*1", obs_id="d6")
    c19 = genotype_obs("*2/*2", gene="CYP2C19", obs_id="c19")
    [card] = cards(call, AMITRIPTYLINE, d6, c19)
    assert "CYP2D6 normal metabolizer and CYP2C19 poor metabolizer" in card["summary"]
    assert card["indicator"] == "warning"  # avoid, moderate
    assert "Table 4" in card["detail"]


@pytest.mark.parametrize(
    ("observations", "indicator", "table"),
    [
        ([("CYP2D6", "*4/*4")], "critical", "Table 2"),  # CYP2D6 only, PM: avoid strong
        ([("CYP2C19", "*2/*2")], "warning", "Table 3"),  # CYP2C19 only, PM: avoid moderate
        ([("CYP2C19", "*1/*17")], "warning", "Table 3"),  # rapid: avoid, optional
        ([("CYP2D6", "*1/*1"), ("CYP2C19", "*1/*1")], None, None),
        ([("CYP2D6", "*1/*1"), ("CYP2C19", "*17/*17")], "warning", "Table 4"),  # consider alt.
    ],
)
def test_amitriptyline_single_and_joint(call, observations, indicator, table):
    obs = [genotype_obs(dip, gene=g, obs_id=g) for g, dip in observations]
    found = cards(call, AMITRIPTYLINE, *obs)
    assert (found[0]["indicator"] if found else None) == indicator
    if found:
        assert table in found[0]["detail"]


# -- Venlafaxine, duloxetine (CPIC 2023) ----------------------------------------------------


@pytest.mark.parametrize(
    ("phenotype", "indicator"), [(UM, None), (NM, None), (IM, None), (PM, "warning")]
)
def test_venlafaxine_cyp2d6(call, phenotype, indicator):
    assert indicator_of(call, VENLAFAXINE, phenotype_obs(phenotype)) == indicator


def test_duloxetine_never_alerts(call):
    for phenotype in (UM, PM):
        assert cards(call, DULOXETINE, phenotype_obs(phenotype)) == []


# -- HLA and carbamazepine / oxcarbazepine (CPIC 2017) --------------------------------------


def hla_genotype(value: str, gene: str = "HLA-B", obs_id: str = "hla-b", where: str = "text"):
    return genotype_obs(value, gene=gene, obs_id=obs_id, where=where)


def presence(marker: str, present: bool, obs_id: str = "presence"):
    obs = phenotype_obs(NM, obs_id=obs_id)
    obs["code"] = {"text": f"{marker} [Presence]"}
    obs["component"] = [gene_component(marker.split("*")[0])]
    answer = ("LA9633-4", "Present") if present else ("LA9634-2", "Absent")
    obs["valueCodeableConcept"] = {
        "coding": [{"system": LOINC, "code": answer[0], "display": answer[1]}]
    }
    return obs


@pytest.mark.parametrize(
    "observation",
    [
        hla_genotype("HLA-B*15:02:01+HLA-B*07:02:01"),  # GL string, three fields
        hla_genotype("HLA-B*15:02+HLA-B*07:02", where="display"),  # two fields
        hla_genotype("B*15:02, B*44:03", where="valueString"),  # allele list
        hla_genotype("HLA-B*1502/HLA-B*1502+HLA-B*0702"),  # old names, unambiguous
        presence("HLA-B*15:02", True),
    ],
)
def test_hla_b1502_carrier_gets_a_critical_carbamazepine_card(call, observation):
    [card] = cards(call, CARBAMAZEPINE, observation)
    assert card["indicator"] == "critical"
    assert "carbamazepine" in card["summary"] and "HLA-B*15:02" in card["summary"]
    assert "29392710" in card["detail"]
    assert "3 months" in card["detail"]


def test_oxcarbazepine_in_b1502_carrier(call):
    [card] = cards(call, OXCARBAZEPINE, hla_genotype("HLA-B*15:02:01+HLA-B*07:02:01"))
    assert card["indicator"] == "critical" and "oxcarbazepine" in card["summary"]


@pytest.mark.parametrize(
    "observations",
    [
        [hla_genotype("HLA-B*07:02:01+HLA-B*44:03:01")],  # typed negative
        [presence("HLA-B*15:02", False)],
        [
            hla_genotype("HLA-B*07:02+HLA-B*44:03"),
            hla_genotype("HLA-A*02:01+HLA-A*24:02", "HLA-A", "a"),
        ],
    ],
)
def test_negative_hla_gives_no_card(call, observations):
    assert cards(call, CARBAMAZEPINE, *observations) == []


@pytest.mark.parametrize(
    "observation",
    [
        hla_genotype("HLA-B*15+HLA-B*07:02"),  # one field in the B*15 group: ambiguous
        hla_genotype("HLA-B*15:02/HLA-B*15:01+HLA-B*07:02"),  # GL ambiguity on the marker
    ],
)
def test_ambiguous_hla_gives_the_not_excluded_warning(call, observation):
    """No guideline row fits, but an unclear result is never quieter than none
    (tests/clinical/test_unclear_results.py)."""
    [card] = cards(call, CARBAMAZEPINE, observation)
    assert card["indicator"] == "warning" and "HLA-B*15:02 not excluded" in card["summary"]


def loinc_presence(**value):
    """HLA-B*15:02 [Presence] as labs code it: LOINC 57979-7, no display text."""
    obs = phenotype_obs(NM, obs_id="b1502")
    obs.pop("valueCodeableConcept", None)
    obs.pop("component", None)
    obs["code"] = {"coding": [{"system": LOINC, "code": "57979-7"}]}
    return {**obs, **value}


def answer(code: str) -> dict:
    return {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": code}]}}


def in_a_component(**value):
    """A panel Observation with the presence result in a component."""
    obs = loinc_presence()
    obs["code"] = {"text": "Pharmacogenomic HLA panel"}
    obs["component"] = [{"code": {"coding": [{"system": LOINC, "code": "57979-7"}]}, **value}]
    return obs


POSITIVE_B1502 = {
    "Present": loinc_presence(**answer("LA9633-4")),
    "Positive": loinc_presence(**answer("LA6576-8")),
    "Detected": loinc_presence(**answer("LA11882-0")),
    "text Positive": loinc_presence(valueString="Positive"),
    "text Detected": loinc_presence(valueString="Detected"),
    "codeable text": loinc_presence(valueCodeableConcept={"text": "Positive"}),
    "boolean": loinc_presence(valueBoolean=True),
    "component": in_a_component(**answer("LA9633-4")),
}
NEGATIVE_B1502 = {
    "Absent": loinc_presence(**answer("LA9634-2")),
    "Negative": loinc_presence(**answer("LA6577-6")),
    "Not detected": loinc_presence(**answer("LA11883-8")),
    "text Not detected": loinc_presence(valueString="Not detected"),
    "boolean": loinc_presence(valueBoolean=False),
    "component": in_a_component(valueString="Negative"),
}


@pytest.mark.parametrize("observation", POSITIVE_B1502.values(), ids=POSITIVE_B1502.keys())
@pytest.mark.parametrize("product", [CARBAMAZEPINE, OXCARBAZEPINE])
def test_a_loinc_coded_b1502_positive_result_gets_the_critical_card(call, product, observation):
    """LOINC 57979-7 is the code the service itself suggests ordering: its results count."""
    [card] = cards(call, product, observation)
    assert card["indicator"] == "critical" and "HLA-B*15:02" in card["summary"]


@pytest.mark.parametrize("observation", NEGATIVE_B1502.values(), ids=NEGATIVE_B1502.keys())
def test_a_loinc_coded_b1502_negative_result_needs_no_test_and_no_card(call, observation):
    assert cards(call, CARBAMAZEPINE, observation) == []


def test_the_genomic_results_query_asks_for_b1502_presence_results(knowledge):
    from cds_service.fhir.queries import prefetch_templates

    assert "http://loinc.org|57979-7" in prefetch_templates(knowledge)["genomicResults"]


@pytest.mark.parametrize("product", [CARBAMAZEPINE, OXCARBAZEPINE])
def test_untested_patient_gets_a_pretest_card_suggesting_the_hla_test(call, product):
    [card] = cards(call, product)
    assert card["indicator"] == "info" and "no HLA-B*15:02 result" in card["summary"]
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    request = action["resource"]
    assert action["type"] == "create" and request["resourceType"] == "ServiceRequest"
    assert request["code"]["coding"][0]["code"] == "57979-7"
    assert request["status"] == "draft" and request["subject"]["reference"] == "Patient/pat-1"


def test_a3101_carrier_with_b1502_negative(call):
    found = cards(
        call,
        CARBAMAZEPINE,
        hla_genotype("HLA-B*07:02+HLA-B*44:03"),
        hla_genotype("HLA-A*31:01:02+HLA-A*02:01:01", "HLA-A", "a"),
    )
    [card] = found
    assert card["indicator"] == "critical" and "HLA-A*31:01" in card["summary"]
    # oxcarbazepine has no HLA-A recommendation
    only_hla_a = cards(call, OXCARBAZEPINE, hla_genotype("HLA-A*31:01+HLA-A*02:01", "HLA-A", "a"))
    assert [c["summary"] for c in only_hla_a] == [
        "Oxcarbazepine: no HLA-B*15:02 result on file"  # the pre-test card, no HLA-A card
    ]


def test_both_risk_alleles_give_one_card(call):
    found = cards(
        call,
        CARBAMAZEPINE,
        hla_genotype("HLA-B*15:02+HLA-B*07:02"),
        hla_genotype("HLA-A*31:01+HLA-A*02:01", "HLA-A", "a"),
    )
    assert len(found) == 1


# -- Genes reviewed without a recommendation ------------------------------------------------


def test_oprm1_and_comt_results_never_alert(call):
    for gene_text in ("OPRM1 rs1799971 A/G", "COMT rs4680 G/A"):
        obs = genotype_obs(gene_text, gene=None, obs_id=gene_text[:4])
        assert cards(call, MORPHINE, obs) == []


def test_knowledge_list_shows_considered_pairs(capsys):
    from cds_service.cli import main

    assert main(["knowledge", "list"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "celecoxib",
        "CYP2C9",
        "amitriptyline",
        "CYP2D6 + CYP2C19",
        "HLA-B*15:02",
        "OPRM1",
        "COMT",
        "oxycodone",
        "duloxetine",
        "PMID 32189324",
        "CYP3A4",
        "SCN9A",
    ):
        assert expected in out


def test_nortriptyline_intermediate_reported_without_score(call):
    """CPIC splits CYP2D6 IM by score (0.25-0.5 moderate, 0.75-1 optional) but both rows say
    reduce the dose: a reported IM without a score gets that card with the weaker strength."""
    [card] = cards(call, NORTRIPTYLINE, phenotype_obs(IM))
    assert card["indicator"] == "warning"
    assert "(CPIC, optional)" in card["detail"]
