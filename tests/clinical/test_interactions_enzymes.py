"""Interacting drugs beyond CYP2D6 (issue 24): CYP2C9 and CYP2C19 inhibitors under the same
rule (an interacting drug may add or raise advice, never lower or remove it; the genetic and
the functional phenotype are both judged and the more severe kept); several inhibitors of one
enzyme: the strongest decides and the card names them all."""

from __future__ import annotations

from typing import Any

import pytest
from builders import bundle, genotype_obs, hook_request, med_order, med_statement, with_results

from cds_service.core.hook_request import parse_hook_request
from cds_service.pipeline import Engine

CELECOXIB = ("140587", "celecoxib 200 MG Oral Capsule")
PHENYTOIN = ("855671", "phenytoin sodium 100 MG Extended Release Oral Capsule")
CARISOPRODOL = ("2101", "carisoprodol 350 MG Oral Tablet")
FLUCONAZOLE = ("4450", "fluconazole 200 MG Oral Tablet")
FLUVOXAMINE = ("42355", "fluvoxamine maleate 100 MG Oral Tablet")
AMIODARONE = (None, "amiodarone 200 MG Oral Tablet")  # no ingredient code on file: by name
PAROXETINE = ("314199", "Paroxetine 20 MG Oral Tablet")
DULOXETINE = ("596926", "duloxetine 30 MG Delayed Release Oral Capsule")
CODEINE = ("993781", "Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet")


def taking(drug: tuple[str | None, str], n: int) -> dict[str, Any]:
    """A medication-list entry for ``drug`` (by text alone when it has no code)."""
    code, text = drug
    statement = med_statement((code or "0", text), statement_id=f"stmt-{n}")
    if code is None:
        statement["medicationCodeableConcept"] = {"text": text}
    return statement


def evaluate(knowledge, settings, drug, results, *inhibitors) -> tuple[list[dict[str, Any]], str]:
    prefetch = {
        **with_results(*results),
        "activeMedications": bundle(),
        "medicationStatements": bundle(*(taking(d, i) for i, d in enumerate(inhibitors))),
        "patient": None,
    }
    body = hook_request("order-select", [med_order(drug)], prefetch=prefetch)
    answer, trace = Engine(knowledge, settings).evaluate(parse_hook_request(body, body["hook"]))
    return answer["cards"], trace.render()


def cyp2c9(diplotype: str) -> dict[str, Any]:
    return genotype_obs(diplotype, "CYP2C9", obs_id="c9")


def cyp2c19(diplotype: str) -> dict[str, Any]:
    return genotype_obs(diplotype, "CYP2C19", obs_id="c19")


# -- CYP2C9 ------------------------------------------------------------------------------------


def test_a_cyp2c9_normal_metabolizer_on_fluconazole_gets_the_intermediate_dose_advice(
    knowledge, settings
):
    """AS 2 halved by a moderate inhibitor: AS 1, CPIC's intermediate metabolizer row (the
    celecoxib label itself asks for the lowest dose with fluconazole)."""
    cards, trace = evaluate(knowledge, settings, CELECOXIB, [cyp2c9("*1/*1")], FLUCONAZOLE)
    [card] = cards
    assert card["summary"].startswith(
        "Adjust celecoxib dose: CYP2C9 intermediate metabolizer while taking fluconazole"
    )
    assert "moderate CYP2C9 inhibitor" in card["detail"]
    assert "celecoxib-cyp2c9-as1 (adjust-dose" in trace
    # without the inhibitor: no card (the genotype's usual dose)
    assert evaluate(knowledge, settings, CELECOXIB, [cyp2c9("*1/*1")])[0] == []


def test_a_score_between_two_rows_follows_the_more_cautious_and_says_so(knowledge, settings):
    """*1/*2 (AS 1.5, usual dose) on fluconazole: AS 0.75 lies between the poor metabolizer
    rows (0-0.5) and AS 1: never the genotype's silence, the lower dose leads."""
    cards, trace = evaluate(knowledge, settings, CELECOXIB, [cyp2c9("*1/*2")], FLUCONAZOLE)
    [card] = cards
    assert card["indicator"] == "warning"
    assert "fluconazole" in card["summary"]
    assert "celecoxib-cyp2c9-pm (adjust-dose" in trace
    assert "celecoxib-cyp2c9-as1" in trace  # both possibilities are named


def test_a_poor_metabolizer_by_genotype_stays_one_whatever_the_inhibitor(knowledge, settings):
    cards, _ = evaluate(knowledge, settings, CELECOXIB, [cyp2c9("*3/*3")], FLUCONAZOLE)
    [card] = cards
    assert card["summary"].startswith("Adjust celecoxib dose: CYP2C9 poor metabolizer")


def test_the_lower_dose_of_two_readings_leads_when_both_adjust(knowledge, settings):
    """*1/*3 (AS 1: lowest starting dose) on fluconazole (AS 0.5: 25-50% of it): the poor
    metabolizer's smaller dose is followed, never the milder genotype's."""
    cards, _ = evaluate(knowledge, settings, CELECOXIB, [cyp2c9("*1/*3")], FLUCONAZOLE)
    [card] = cards
    assert card["summary"].startswith(
        "Adjust celecoxib dose: CYP2C9 poor metabolizer while taking fluconazole"
    )


def test_phenytoin_on_fluconazole_gets_the_reduced_maintenance_dose(knowledge, settings):
    cards, _ = evaluate(knowledge, settings, PHENYTOIN, [cyp2c9("*1/*1")], FLUCONAZOLE)
    [card] = cards
    assert card["summary"].startswith(
        "Adjust phenytoin dose: CYP2C9 intermediate metabolizer while taking fluconazole"
    )
    assert "maintenance" in card["detail"]


def test_several_cyp2c9_inhibitors_are_all_named(knowledge, settings):
    cards, trace = evaluate(
        knowledge, settings, CELECOXIB, [cyp2c9("*1/*1")], FLUCONAZOLE, AMIODARONE
    )
    [card] = cards
    assert "while taking amiodarone and fluconazole" in card["summary"]
    assert "while taking amiodarone and fluconazole \\(CYP2C9 inhibitors" in card["detail"]
    assert "also fluconazole" in trace


def test_no_cyp2c9_result_means_no_interaction_card(knowledge, settings):
    cards, _ = evaluate(knowledge, settings, CELECOXIB, [cyp2c19("*1/*1")], FLUCONAZOLE)
    assert cards == []


# -- CYP2C19 -----------------------------------------------------------------------------------


def test_a_strong_cyp2c19_inhibitor_makes_a_normal_metabolizer_act_as_a_poor_one(
    knowledge, settings
):
    cards, trace = evaluate(knowledge, settings, CARISOPRODOL, [cyp2c19("*1/*1")], FLUVOXAMINE)
    [card] = cards
    assert card["summary"].startswith(
        "Carisoprodol: higher exposure, watch for sedation: CYP2C19 poor metabolizer while "
        "taking fluvoxamine"
    )
    assert "strong CYP2C19 inhibitor" in card["detail"]
    assert "project convention" in card["detail"]
    assert "carisoprodol-cyp2c19-nm (no-recommendation" in trace  # the genotype judged too
    assert evaluate(knowledge, settings, CARISOPRODOL, [cyp2c19("*1/*1")])[0] == []


def test_fluconazole_inhibits_both_cyp2c9_and_cyp2c19(knowledge, settings):
    _, trace = evaluate(
        knowledge, settings, CARISOPRODOL, [cyp2c19("*1/*1"), cyp2c9("*1/*1")], FLUCONAZOLE
    )
    assert "a strong CYP2C19 inhibitor" in trace


def test_a_cyp2c19_inhibitor_never_removes_the_genotypes_advice(knowledge, settings):
    """An ultrarapid metabolizer's amitriptyline advice stands beside the poor metabolizer's
    one a strong inhibitor gives; the more severe is followed."""
    amitriptyline = ("856834", "amitriptyline hydrochloride 25 MG Oral Tablet")
    with_inhibitor, trace = evaluate(
        knowledge,
        settings,
        amitriptyline,
        [cyp2c19("*17/*17"), genotype_obs("*1/*1", obs_id="d6")],
        FLUVOXAMINE,
    )
    without, _ = evaluate(
        knowledge, settings, amitriptyline, [cyp2c19("*17/*17"), genotype_obs("*1/*1", obs_id="d6")]
    )
    [card] = with_inhibitor
    [plain] = without
    levels = {"info": 0, "warning": 1, "critical": 2}
    assert levels[card["indicator"]] >= levels[plain["indicator"]]
    assert "2 readings open" in trace


# -- several inhibitors of CYP2D6 --------------------------------------------------------------


def test_of_two_cyp2d6_inhibitors_the_strongest_decides_and_both_are_named(knowledge, settings):
    cards, trace = evaluate(
        knowledge, settings, CODEINE, [genotype_obs("*1/*1", obs_id="d6")], DULOXETINE, PAROXETINE
    )
    [card] = cards
    assert card["indicator"] == "critical"  # paroxetine (strong): a poor metabolizer
    assert "while taking paroxetine and duloxetine" in card["summary"]
    assert "the strongest, paroxetine, strong, decides" in card["detail"]
    assert "also duloxetine" in trace


@pytest.mark.parametrize("gene", ["CYP2D6", "CYP2C9", "CYP2C19"])
def test_each_enzymes_inhibitors_are_data_with_their_source(knowledge, gene):
    table = knowledge.interactions[gene]
    assert table.gene == gene and table.source["url"].startswith("https://www.fda.gov/")
    assert table.cited and table.inhibitors
    for inhibitor in table.inhibitors.values():
        assert inhibitor.strength in table.multipliers or inhibitor.strength in (
            table.phenotype_shifts
        )
    assert gene in knowledge.phenoconversion_genes
