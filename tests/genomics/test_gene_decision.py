"""Deciding one result per gene from its findings (cds_service/genomics/gene_decision.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from cds_service.core.trace import Trace
from cds_service.genomics.gene_decision import combine_haplotypes, decide
from cds_service.genomics.result_reading import Finding
from cds_service.genomics.star_alleles import INDETERMINATE

NM, IM, PM = "Normal Metabolizer", "Intermediate Metabolizer", "Poor Metabolizer"
UM = "Ultrarapid Metabolizer"


def finding(kind: str, phenotype: str, year: int, **extra) -> Finding:
    return Finding(
        gene="CYP2D6",
        kind=kind,
        phenotype=phenotype,
        observation=f"Observation/{kind}-{year}",
        date=datetime(year, 1, 1, tzinfo=UTC),
        date_text=f"{year}-01-01",
        **extra,
    )


def test_a_genotype_decides_over_a_newer_reported_phenotype(knowledge):
    geno = finding("genotype", IM, 2017, diplotype="*1/*4", activity_score=1.0)
    label = finding("phenotype", NM, 2024, reported_as="Extensive metabolizer", legacy=True)
    result = decide([label, geno], knowledge)
    assert result.phenotype == IM and result.diplotype == "*1/*4"
    assert result.reinterpreted_from == "Extensive metabolizer"
    assert any("pre-2019 wording" in n for n in result.notes)


def test_a_newer_indeterminate_result_keeps_the_older_definite_one():
    old = finding("genotype", PM, 2016, diplotype="*4/*4")
    new = finding("genotype", INDETERMINATE, 2025, reason="allele *999 unknown")
    result = decide([new, old])
    assert result.phenotype == PM
    assert any("a newer result (2025-01-01) could not be used" in n for n in result.notes)


def test_same_date_definite_results_that_disagree_are_a_discordance(knowledge):
    """Two results of one day that disagree: neither is dropped and neither silences the
    other; the result carries both readings and both results (issue 22, item 3)."""
    a = finding("genotype", PM, 2020, diplotype="*4/*4")
    b = Finding("CYP2D6", "genotype", NM, "Observation/b", a.date, a.date_text, "*1/*1")
    result = decide([a, b], knowledge)
    assert result.discordant
    assert {r.phenotype for r in result.readings} == {PM, NM}
    assert {r.value for r in result.disagreeing} == {"*4/*4", "*1/*1"}
    assert result.readings[0] == result.all_readings[0]
    assert all(r.disagreeing == result.disagreeing for r in result.readings)


def test_same_date_results_that_agree_are_no_discordance(knowledge):
    geno = finding("genotype", PM, 2020, diplotype="*4/*4", activity_score=0.0)
    label = finding("phenotype", PM, 2020, reported_as="Poor metabolizer")
    result = decide([label, geno], knowledge)
    assert not result.discordant and result.readings == () and result.phenotype == PM


def test_an_amended_result_replaces_its_dates_others_without_a_discordance(knowledge):
    first = finding("phenotype", NM, 2020)
    amended = Finding(
        "CYP2D6",
        "phenotype",
        PM,
        "Observation/amended",
        first.date,
        first.date_text,
        revised=datetime(2020, 2, 1, tzinfo=UTC),
    )
    result = decide([first, amended], knowledge)
    assert not result.discordant and result.phenotype == PM
    assert any("amended or corrected" in n for n in result.notes)


def test_a_genotype_and_a_label_no_rule_change_explains_are_a_discordance(knowledge):
    """The issue's case: *1/*1 in 2018 and 'poor metabolizer' from another lab in 2024. No
    CPIC change ever made *1/*1 a poor metabolizer."""
    geno = finding("genotype", NM, 2018, diplotype="*1/*1", activity_score=2.0)
    label = finding("phenotype", PM, 2024, reported_as="Poor metabolizer", performer="Lab B")
    result = decide([geno, label], knowledge)
    assert result.discordant and result.phenotype == NM  # the genotype reads first
    assert [r.phenotype for r in result.readings] == [NM, PM]
    [pm] = [r for r in result.disagreeing if r.phenotype == PM]
    assert (pm.value, pm.date_text, pm.performer) == ("Poor metabolizer", "2024-01-01", "Lab B")
    assert result.reinterpreted_from is None


def test_a_label_a_former_cpic_rule_gives_is_re_interpreted_not_discordant(knowledge):
    """*1/*4 (activity score 1) was a normal metabolizer under the pre-2019 bands, even when
    the lab says it in today's words."""
    geno = finding("genotype", IM, 2018, diplotype="*1/*4", activity_score=1.0)
    label = finding("phenotype", NM, 2018, reported_as="Normal metabolizer")
    result = decide([geno, label], knowledge)
    assert not result.discordant and result.phenotype == IM
    assert result.reinterpreted_from == "Normal metabolizer"


def test_a_newer_genotype_with_copies_explains_an_older_one_without(knowledge):
    old = finding("genotype", NM, 2018, diplotype="*1/*1", activity_score=2.0)
    new = finding("genotype", UM, 2024, diplotype="*1/*1x2", activity_score=3.0)
    result = decide([old, new], knowledge)
    assert not result.discordant and result.phenotype == UM
    assert any("stated no copy number" in n for n in result.notes)


def test_a_newer_genotype_with_a_deletion_does_not_explain_an_older_one(knowledge):
    """*1/*1, then *1/*5: a panel that could not see the deletion (or a mix-up): shown."""
    old = finding("genotype", NM, 2018, diplotype="*1/*1", activity_score=2.0)
    new = finding("genotype", IM, 2024, diplotype="*1/*5", activity_score=1.0)
    result = decide([old, new], knowledge)
    assert result.discordant and [r.phenotype for r in result.readings] == [IM, NM]


def test_only_phenotypes_an_older_label_a_rule_change_explains_is_noted(knowledge):
    """'Normal' in 2017 and 'intermediate' in 2023: before 2019 an activity score of 1 was
    called normal, so the newer result decides and the older is mentioned."""
    result = decide([finding("phenotype", NM, 2017), finding("phenotype", IM, 2023)], knowledge)
    assert result.phenotype == IM and not result.discordant
    assert any("an older result (2017-01-01) said Normal Metabolizer" in n for n in result.notes)


def test_only_phenotypes_that_no_rule_change_explains_are_a_discordance(knowledge):
    result = decide([finding("phenotype", NM, 2019), finding("phenotype", PM, 2023)], knowledge)
    assert result.discordant and [r.phenotype for r in result.readings] == [PM, NM]


def test_hla_results_that_disagree_are_a_discordance(knowledge):
    positive = Finding(
        "HLA-B*15:02", "presence", "positive", "Observation/p", datetime(2018, 1, 1, tzinfo=UTC)
    )
    negative = Finding(
        "HLA-B*15:02", "presence", "negative", "Observation/n", datetime(2024, 1, 1, tzinfo=UTC)
    )
    result = decide([positive, negative], knowledge)
    assert result.discordant and {r.phenotype for r in result.readings} == {"positive", "negative"}


# The module's rules one by one (issue 30, item 7); the tests above cover rules 1, 3, 4 and 5.


def test_rule_2_without_a_genotype_the_reported_phenotype_decides_in_todays_words(knowledge):
    label = finding("phenotype", NM, 2016, reported_as="Extensive metabolizer", legacy=True)
    result = decide([label], knowledge)
    assert result.phenotype == NM and result.kind == "phenotype"
    assert any("pre-2019 wording ('Extensive metabolizer')" in n for n in result.notes)


def test_rule_2_a_likely_phenotype_says_whose_advice_applies(knowledge):
    label = finding("phenotype", PM, 2020, likely="Likely Poor Metabolizer")
    [note] = decide([label], knowledge).notes
    assert "'Likely Poor Metabolizer'" in note and "a poor metabolizer applies" in note


def test_rule_3_of_agreeing_results_the_newest_decides(knowledge):
    old = finding("genotype", PM, 2016, diplotype="*4/*4", activity_score=0.0)
    new = finding("genotype", PM, 2023, diplotype="*4/*5", activity_score=0.0)
    result = decide([old, new], knowledge)
    assert (result.diplotype, result.date_text, result.discordant) == ("*4/*5", "2023-01-01", False)


def test_the_answer_does_not_depend_on_the_order_of_the_results(knowledge):
    a = finding("genotype", PM, 2020, diplotype="*4/*4")
    b = Finding("CYP2D6", "genotype", NM, "Observation/b", a.date, a.date_text, "*1/*1")
    assert decide([a, b], knowledge) == decide([b, a], knowledge)


def test_only_indeterminate_results_give_an_indeterminate_result_with_the_reason():
    result = decide([finding("genotype", INDETERMINATE, 2024, reason="allele *999 unknown")])
    assert not result.actionable and result.notes == ("allele *999 unknown",)


def test_rule_6_two_haplotypes_of_one_date_make_a_diplotype(knowledge):
    one = finding("haplotype", INDETERMINATE, 2024, diplotype="*1")
    two = replace(one, observation="Observation/other", diplotype="*4")
    trace = Trace()
    [made] = combine_haplotypes([one, two], [one, two], knowledge, trace)
    assert (made.kind, made.diplotype, made.phenotype) == ("genotype", "*1/*4", IM)
    [alone] = combine_haplotypes([one], [one], knowledge, Trace())
    assert alone.phenotype == INDETERMINATE and "needs exactly two" in alone.reason
    genotype = finding("genotype", IM, 2024, diplotype="*1/*4")
    assert combine_haplotypes([one, two], [one, two, genotype], knowledge, Trace()) == []


def test_rule_6_an_hla_marker_is_present_if_either_copy_carries_it(knowledge):
    def copy(status: str, typed: str, ref: str) -> Finding:
        return Finding(
            "HLA-B*15:02",
            "haplotype",
            status,
            ref,
            datetime(2024, 1, 1, tzinfo=UTC),
            diplotype=typed,
        )

    pos, neg = (
        copy("positive", "HLA-B*15:02", "Observation/1"),
        copy("negative", "HLA-B*07:02", "Observation/2"),
    )
    neg2 = copy("negative", "HLA-B*08:01", "Observation/3")
    assert combine_haplotypes([pos, neg], [], knowledge, Trace())[0].phenotype == "positive"
    assert combine_haplotypes([neg, neg2], [], knowledge, Trace())[0].phenotype == "negative"
    [one_copy] = combine_haplotypes([neg], [], knowledge, Trace())
    assert one_copy.phenotype == INDETERMINATE  # one copy typed: absent is not shown
