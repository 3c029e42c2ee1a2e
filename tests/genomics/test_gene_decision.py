"""Deciding one result per gene from its findings (cds_service/genomics/gene_decision.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from cds_service.genomics.gene_decision import decide
from cds_service.genomics.result_reading import Finding
from cds_service.genomics.star_alleles import INDETERMINATE

NM, IM, PM = "Normal Metabolizer", "Intermediate Metabolizer", "Poor Metabolizer"


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


def test_a_genotype_decides_over_a_newer_reported_phenotype():
    geno = finding("genotype", IM, 2017, diplotype="*1/*4", activity_score=1.0)
    label = finding("phenotype", NM, 2024, reported_as="Extensive metabolizer", legacy=True)
    result = decide([label, geno])
    assert result.phenotype == IM and result.diplotype == "*1/*4"
    assert result.reinterpreted_from == "Extensive metabolizer"
    assert any("pre-2019 wording" in n for n in result.notes)


def test_a_newer_indeterminate_result_keeps_the_older_definite_one():
    old = finding("genotype", PM, 2016, diplotype="*4/*4")
    new = finding("genotype", INDETERMINATE, 2025, reason="allele *999 unknown")
    result = decide([new, old])
    assert result.phenotype == PM
    assert any("a newer result (2025-01-01) could not be used" in n for n in result.notes)


def test_same_date_definite_results_that_disagree_give_no_result():
    a = finding("genotype", PM, 2020, diplotype="*4/*4")
    b = Finding("CYP2D6", "genotype", NM, "Observation/b", a.date, a.date_text, "*1/*1")
    assert decide([a, b]).phenotype == INDETERMINATE


def test_only_phenotypes_the_newest_decides_and_the_older_is_noted():
    result = decide([finding("phenotype", NM, 2019), finding("phenotype", PM, 2023)])
    assert result.phenotype == PM
    assert any("an older result (2019-01-01) said Normal Metabolizer" in n for n in result.notes)
