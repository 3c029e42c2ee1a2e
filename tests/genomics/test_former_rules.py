"""Which disagreements a change of CPIC's rules explains (cds_service/genomics/former_rules.py):
an outdated label is re-interpreted, anything else is a discordance (issue 22, item 3)."""

from __future__ import annotations

import pytest

from cds_service.genomics.former_rules import former_phenotypes, relabelling, same_call

NM, IM, PM, UM, RM = (
    "Normal Metabolizer",
    "Intermediate Metabolizer",
    "Poor Metabolizer",
    "Ultrarapid Metabolizer",
    "Rapid Metabolizer",
)


@pytest.mark.parametrize(
    ("gene", "diplotype", "former"),
    [
        ("CYP2D6", "*1/*4", {NM}),  # activity score 1: 'extensive' before 2019
        ("CYP2D6", "*10/*10", {NM}),  # *10 was 0.5: 1.0
        ("CYP2D6", "*1x2/*41", {UM}),  # *41 was 0.5: 2.5
        ("CYP2D6", "*1/*1", set()),  # never anything but normal
        ("CYP2D6", "*4/*4", set()),  # never anything but poor
        ("CYP2D6", "*1/*1x2", set()),
        ("CYP2C19", "*1/*17", {UM}),  # ultrarapid before 2017, rapid today
        ("CYP2C19", "*2/*2", set()),
        ("CYP2C9", "*2/*2", set()),  # no former rule on file for CYP2C9
    ],
)
def test_what_former_rules_called_a_diplotype(knowledge, gene, diplotype, former):
    assert set(former_phenotypes(knowledge, gene, diplotype)) == former


def test_each_former_phenotype_names_its_rule_and_source(knowledge):
    rule = former_phenotypes(knowledge, "CYP2D6", "*1/*4")[NM]
    assert rule.id == "cyp2d6-activity-score-before-2019"
    assert rule.source["pmid"] == "24458010"


@pytest.mark.parametrize(
    ("older", "newer", "explained"),
    [
        (NM, IM, True),  # 'normal' (AS 1) in 2017, 'intermediate' today
        (UM, NM, True),  # 'ultrarapid' (AS 2.5) before, 'normal' (2.25) today
        (NM, PM, False),
        (PM, NM, False),
        (IM, NM, False),  # the values only went down: never this way
        (NM, UM, False),
    ],
)
def test_which_label_changes_without_a_genotype_a_rule_change_explains(
    knowledge, older, newer, explained
):
    assert (relabelling(knowledge, "CYP2D6", older, newer) is not None) is explained


def test_cyp2c19_ultrarapid_then_rapid_is_a_relabelling(knowledge):
    assert relabelling(knowledge, "CYP2C19", UM, RM) is not None
    assert relabelling(knowledge, "CYP2C19", RM, UM) is None


def test_likely_terms_make_the_same_call():
    assert same_call("Likely Intermediate Metabolizer", IM)
    assert not same_call("Likely Poor Metabolizer", IM)
