"""The star-allele grammar and scoring, against every diplotype in the CPIC tables
(tests/genomics/data/cpic_diplotypes) and the structural calls labs report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cds_service.genomics.star_alleles import INDETERMINATE, normalise_diplotype, score_diplotype

TABLES = Path(__file__).parent / "data" / "cpic_diplotypes"


def cpic_rows(gene: str) -> list[dict[str, str]]:
    with (TABLES / f"{gene}.tsv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.mark.parametrize("gene", ["CYP2D6", "CYP2C9", "CYP2C19"])
def test_every_cpic_diplotype(knowledge, gene):
    table = knowledge.genes[gene]
    rows = cpic_rows(gene)
    assert len(rows) > 300
    wrong = []
    for row in rows:
        scored = score_diplotype(row["diplotype"], table)
        expected_score = row["activity_score"]
        got_score = scored.activity_score_text
        if expected_score in ("", "n/a"):
            expected_score = None
        else:
            expected_score = (
                expected_score.replace(".0", "")
                if expected_score.endswith(".0")
                else expected_score
            )
        if scored.phenotype != row["phenotype"] or (
            expected_score is not None and got_score != expected_score
        ):
            wrong.append(
                (
                    row["diplotype"],
                    row["activity_score"],
                    row["phenotype"],
                    got_score,
                    scored.phenotype,
                )
            )
    assert wrong == []


@pytest.mark.parametrize(
    ("raw", "phenotype", "score"),
    [
        ("*1/*41", "Normal Metabolizer", "1.25"),
        ("*1/*9", "Normal Metabolizer", "1.25"),
        ("*1/*10", "Normal Metabolizer", "1.25"),
        ("*1x2/*2", "Ultrarapid Metabolizer", "3"),
        ("*1/*1x3", "Ultrarapid Metabolizer", "≥4"),
        ("*2x4/*4", "Ultrarapid Metabolizer", "≥3"),
        ("*4x2/*4", "Poor Metabolizer", "0"),
        ("CYP2D6*1/CYP2D6*4", "Intermediate Metabolizer", "1"),
        ("CYP2D6 *1.001/*4.001", "Intermediate Metabolizer", "1"),
        ("*17/*17", "Intermediate Metabolizer", "1"),
    ],
)
def test_cyp2d6_examples(knowledge, raw, phenotype, score):
    scored = score_diplotype(raw, knowledge.genes["CYP2D6"])
    assert (scored.phenotype, scored.activity_score_text) == (phenotype, score)


@pytest.mark.parametrize("raw", ["*1", "*1/*2/*3", "rs1065852 A/G", "*1/*41x5", "*41/*2xN", ""])
def test_unscorable_is_indeterminate_with_a_reason(knowledge, raw):
    scored = score_diplotype(raw, knowledge.genes["CYP2D6"])
    assert scored.phenotype == INDETERMINATE
    assert scored.reason


def test_normalise():
    assert normalise_diplotype("CYP2D6 *1/*2x2", "CYP2D6") == ("*1", "*2x2")
    assert normalise_diplotype("*1/*2", "CYP2D6") == ("*1", "*2")
    assert normalise_diplotype("*1 / *2×2", "CYP2D6") == ("*1", "*2x2")
    assert normalise_diplotype("*1/*", "CYP2D6") is None


# -- structural calls as labs report them ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "phenotype", "score"),
    [
        # unknown copy number: called when the x2 and x>=3 readings agree
        ("*1/*2xN", "Ultrarapid Metabolizer", "≥3"),
        ("*4/*4xN", "Poor Metabolizer", "0"),
        ("*1/*4xN", "Intermediate Metabolizer", "1"),
        ("*1/*2XN", "Ultrarapid Metabolizer", "≥3"),
        ("*1/*2 (xN)", "Ultrarapid Metabolizer", "≥3"),
        # tandem and hybrid haplotypes: the sum of their parts
        ("*36+*10/*10", "Intermediate Metabolizer", "0.5"),
        ("*36+*10/*36+*10", "Intermediate Metabolizer", "0.5"),
        ("*4/*68+*4", "Poor Metabolizer", "0"),
        ("*13+*2/*1", "Normal Metabolizer", "2"),
        ("*36x2+*10/*1", "Normal Metabolizer", "1.25"),
        ("*1/*36+*10", "Normal Metabolizer", "1.25"),
        # spellings seen in lab reports
        ("*4.001/*4.002", "Poor Metabolizer", "0"),
        ("CYP2D6*1/CYP2D6*4", "Intermediate Metabolizer", "1"),
        ("cyp2d6 *1 / *4", "Intermediate Metabolizer", "1"),
        ("CYP2D6 *36+*10 / *10", "Intermediate Metabolizer", "0.5"),
        ("*27x2/*1", "Ultrarapid Metabolizer", "3"),  # CPIC's 2024 addition
    ],
)
def test_structural_calls(knowledge, raw, phenotype, score):
    scored = score_diplotype(raw, knowledge.genes["CYP2D6"])
    assert (scored.phenotype, scored.activity_score_text) == (phenotype, score), scored.reason


def test_unknown_copy_number_that_decides_the_phenotype_is_indeterminate(knowledge):
    scored = score_diplotype("*41/*2xN", knowledge.genes["CYP2D6"])
    assert scored.phenotype == INDETERMINATE
    assert "2.25 (normal metabolizer)" in scored.reason
    assert "≥3.25 (ultrarapid metabolizer)" in scored.reason


@pytest.mark.parametrize("raw", ["*28x2/*1", "*999+*10/*1", "*36+/*10", "*1/*2xM"])
def test_structural_calls_the_tables_cannot_score(knowledge, raw):
    assert score_diplotype(raw, knowledge.genes["CYP2D6"]).phenotype == INDETERMINATE


def test_normalise_structural():
    assert normalise_diplotype("*36+*10/*10", "CYP2D6") == ("*36+*10", "*10")
    assert normalise_diplotype("CYP2D6*4.001/CYP2D6*2xN", "CYP2D6") == ("*4", "*2xN")


def test_a_genotype_text_past_the_length_cap_is_indeterminate(knowledge):
    """Issue 26, item 2: longer than any diplotype is unreadable, not parsed."""
    from cds_service.genomics.star_alleles import MAX_TEXT

    padded = "*1/*4" + " " * MAX_TEXT
    assert normalise_diplotype("*1/*4" + " " * 100, "CYP2D6") is not None
    assert normalise_diplotype(padded, "CYP2D6") is None
    assert score_diplotype(padded, knowledge.genes["CYP2D6"]).phenotype == INDETERMINATE
