"""The pain and perioperative order set (issue 24): phenytoin and fosphenytoin (CPIC 2020),
the other tricyclics (CPIC 2016), ondansetron and tropisetron (CPIC 2017), volatile
anaesthetics and succinylcholine with RYR1/CACNA1S (CPIC 2019), and FDA label pairs. Each
gives the guideline's card for the phenotypes it covers and no card for the others."""

from __future__ import annotations

from typing import Any

import pytest
from builders import bundle, genotype_obs, hook_request, med_order, phenotype_obs, with_results

from cds_service.core.hook_request import parse_hook_request
from cds_service.pipeline import Engine

PHENYTOIN = ("855671", "phenytoin sodium 100 MG Extended Release Oral Capsule")
FOSPHENYTOIN = ("1670195", "fosphenytoin sodium 50 MG PE/ML Injectable Solution")
IMIPRAMINE = ("835564", "imipramine hydrochloride 25 MG Oral Tablet")
DESIPRAMINE = ("1099288", "desipramine hydrochloride 10 MG Oral Tablet")
DOXEPIN = ("1000076", "doxepin 50 MG Oral Capsule")
CLOMIPRAMINE = ("2597", "clomipramine")
TRIMIPRAMINE = ("10834", "trimipramine")
ONDANSETRON = ("198052", "ondansetron 4 MG Oral Tablet")
TROPISETRON = ("27392", "tropisetron")
METOCLOPRAMIDE = ("311666", "metoclopramide 10 MG Oral Tablet")
LOFEXIDINE = (None, "lofexidine 0.18 MG Oral Tablet")
CARISOPRODOL = ("2101", "carisoprodol 350 MG Oral Tablet")
SEVOFLURANE = ("36453", "sevoflurane")
DESFLURANE = ("27340", "desflurane")
SUCCINYLCHOLINE = ("10154", "succinylcholine chloride 20 MG/ML Injectable Solution")

CARRIER = genotype_obs("HLA-B*15:02:01+HLA-B*07:02:01", "HLA-B", obs_id="hla")
NON_CARRIER = genotype_obs("HLA-B*07:02:01+HLA-B*44:03:01", "HLA-B", obs_id="hla")


def order(drug: tuple[str | None, str]) -> dict[str, Any]:
    code, text = drug
    o = med_order((code or "0", text))
    if code is None:
        o["medicationCodeableConcept"] = {"text": text}
    return o


def evaluate(knowledge, settings, drug, *results) -> tuple[list[dict[str, Any]], str]:
    prefetch = {**with_results(*results), "activeMedications": bundle(), "patient": None}
    body = hook_request("order-select", [order(drug)], prefetch=prefetch)
    answer, trace = Engine(knowledge, settings).evaluate(parse_hook_request(body, body["hook"]))
    return answer["cards"], trace.render()


def summaries(knowledge, settings, drug, *results) -> list[tuple[str, str]]:
    cards, _ = evaluate(knowledge, settings, drug, *results)
    return [(c["indicator"], c["summary"]) for c in cards]


def d6(diplotype: str) -> dict[str, Any]:
    return genotype_obs(diplotype, obs_id="d6")


def c9(diplotype: str) -> dict[str, Any]:
    return genotype_obs(diplotype, "CYP2C9", obs_id="c9")


# -- phenytoin and fosphenytoin ----------------------------------------------------------------


@pytest.mark.parametrize("drug", [PHENYTOIN, FOSPHENYTOIN])
def test_an_hla_b1502_carrier_is_told_not_to_start_phenytoin(knowledge, settings, drug):
    [(level, summary)] = summaries(knowledge, settings, drug, CARRIER)
    assert level == "critical" and summary.startswith("Avoid ")
    # with a CYP2C9 result too, the two-marker row still says avoid
    [(level, _)] = summaries(knowledge, settings, drug, CARRIER, c9("*3/*3"))
    assert level == "critical"


@pytest.mark.parametrize(
    ("diplotype", "share"), [("*1/*3", "25%"), ("*3/*3", "50%"), ("*2/*2", "25%")]
)
def test_reduced_cyp2c9_function_lowers_the_maintenance_dose_only(
    knowledge, settings, diplotype, share
):
    """CPIC: AS 1, about 25% less maintenance dose; AS 0-0.5, about 50% less; the first
    (loading) dose is not changed, so no one-click dose replaces the order."""
    cards, _ = evaluate(knowledge, settings, PHENYTOIN, c9(diplotype), NON_CARRIER)
    [card] = cards
    assert card["summary"].startswith("Adjust phenytoin dose: HLA-B*15:02 negative and CYP2C9")
    assert f"maintenance doses about {share} below" in card["detail"]
    assert card.get("suggestions", []) == []
    assert "loading" in card["detail"]
    assert "maintenance" in card["detail"]


@pytest.mark.parametrize("diplotype", ["*1/*1", "*1/*2"])
def test_cyp2c9_normal_or_as_1_5_and_hla_negative_gives_no_phenytoin_card(
    knowledge, settings, diplotype
):
    assert summaries(knowledge, settings, PHENYTOIN, c9(diplotype), NON_CARRIER) == []
    assert summaries(knowledge, settings, FOSPHENYTOIN, c9(diplotype)) == []


# -- the other tricyclics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "drug", [IMIPRAMINE, DESIPRAMINE, DOXEPIN, CLOMIPRAMINE, TRIMIPRAMINE], ids=lambda d: d[1]
)
def test_every_tricyclic_alerts_for_cyp2d6_poor_and_ultrarapid_not_normal(
    knowledge, settings, drug
):
    for diplotype in ("*4/*4", "*1/*2x2"):
        cards, _ = evaluate(knowledge, settings, drug, d6(diplotype))
        [card] = cards
        assert card["indicator"] in ("warning", "critical")
        assert "CPIC" in card["detail"] and "optional" in card["detail"]
    assert summaries(knowledge, settings, drug, d6("*1/*1")) == []


def test_a_tertiary_tricyclic_follows_cyp2c19_too(knowledge, settings):
    [(_, summary)] = summaries(
        knowledge, settings, IMIPRAMINE, d6("*1/*1"), genotype_obs("*2/*2", "CYP2C19")
    )
    assert "CYP2C19 poor metabolizer" in summary
    # desipramine (a secondary amine) has no CYP2C19 rows
    assert summaries(knowledge, settings, DESIPRAMINE, genotype_obs("*2/*2", "CYP2C19")) == []


# -- ondansetron and tropisetron ---------------------------------------------------------------


@pytest.mark.parametrize("drug", [ONDANSETRON, TROPISETRON], ids=lambda d: d[1])
def test_an_ultrarapid_metabolizer_is_offered_another_antiemetic(knowledge, settings, drug):
    cards, _ = evaluate(knowledge, settings, drug, d6("*1/*2x2"))
    [card] = cards
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Consider an alternative to ")
    assert "granisetron" in card["detail"]
    for diplotype in ("*1/*1", "*1/*4", "*4/*4"):  # CPIC: no change (PM, IM: no recommendation)
        assert summaries(knowledge, settings, drug, d6(diplotype)) == []


def test_the_granisetron_alternative_is_a_one_click_product(knowledge, settings):
    cards, _ = evaluate(knowledge, settings, ONDANSETRON, d6("*1/*2x2"))
    [card] = cards
    assert [s["label"] for s in card["suggestions"]] == [
        "Replace with granisetron 1 MG Oral Tablet (set dose)"
    ]


# -- RYR1 and CACNA1S --------------------------------------------------------------------------


@pytest.mark.parametrize("drug", [SEVOFLURANE, DESFLURANE, SUCCINYLCHOLINE], ids=lambda d: d[1])
@pytest.mark.parametrize(
    ("gene", "value"),
    [
        ("RYR1", "c.7300G>A"),  # on CPIC's list as MH-associated
        ("RYR1", "Reference/c.7300G>A"),  # as PharmCAT writes it
        ("CACNA1S", "rs1800559"),  # by rsID
    ],
)
def test_a_malignant_hyperthermia_susceptible_patient_gets_a_critical_card(
    knowledge, settings, drug, gene, value
):
    cards, _ = evaluate(knowledge, settings, drug, genotype_obs(value, gene, obs_id="mh"))
    [card] = cards
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Avoid ")
    assert f"{gene} malignant hyperthermia susceptibility" in card["summary"]


def test_an_interpretation_saying_susceptible_is_read(knowledge, settings):
    result = phenotype_obs("Malignant hyperthermia susceptible", "RYR1", obs_id="mh")
    [(level, _)] = summaries(knowledge, settings, SEVOFLURANE, result)
    assert level == "critical"


@pytest.mark.parametrize(
    "result",
    [
        genotype_obs("c.4400A>G", "RYR1", obs_id="mh"),  # a variant of uncertain significance
        phenotype_obs("Uncertain Susceptibility", "RYR1", obs_id="mh"),
    ],
    ids=["vus", "uncertain-susceptibility"],
)
def test_an_uncertain_result_gives_no_card_and_the_trace_says_why(knowledge, settings, result):
    cards, trace = evaluate(knowledge, settings, SEVOFLURANE, result)
    assert cards == []
    assert "Indeterminate" in trace and "no card" in trace
    assert "uncertain" in trace.lower()


# -- FDA label pairs ---------------------------------------------------------------------------


def test_metoclopramide_lofexidine_for_a_cyp2d6_poor_metabolizer(knowledge, settings):
    [(_, summary)] = summaries(knowledge, settings, METOCLOPRAMIDE, d6("*4/*4"))
    assert summary.startswith("Adjust metoclopramide dose: CYP2D6 poor metabolizer")
    [(_, summary)] = summaries(knowledge, settings, LOFEXIDINE, d6("*4/*4"))
    assert summary.startswith("Lofexidine: higher exposure, watch blood pressure and heart rate")
    for drug in (METOCLOPRAMIDE, LOFEXIDINE):
        assert summaries(knowledge, settings, drug, d6("*1/*1")) == []
        assert summaries(knowledge, settings, drug, d6("*1/*2x2")) == []


def test_carisoprodol_for_a_cyp2c19_poor_metabolizer_only(knowledge, settings):
    [(_, summary)] = summaries(knowledge, settings, CARISOPRODOL, genotype_obs("*2/*2", "CYP2C19"))
    assert summary.startswith("Carisoprodol: higher exposure, watch for sedation")
    for diplotype in ("*1/*1", "*1/*2", "*17/*17"):
        assert (
            summaries(knowledge, settings, CARISOPRODOL, genotype_obs(diplotype, "CYP2C19")) == []
        )


def test_every_new_row_carries_its_source_year_pmid_and_strength(knowledge):
    new = {
        "cpic-phenytoin-2020",
        "cpic-ondansetron-2017",
        "cpic-ryr1-cacna1s-2019",
        "cpic-tricyclics-2016-other",
    }
    rows = [r for r in knowledge.recommendations if r.guideline and r.guideline.id in new]
    assert {r.guideline.id for r in rows if r.guideline} == new
    for row in rows:
        assert row.guideline is not None and row.guideline.pmid and row.guideline.year
        assert row.strength and row.table
