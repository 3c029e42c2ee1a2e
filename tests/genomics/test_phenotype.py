"""Reported phenotype wording: today's CPIC terms, abbreviations and pre-2019 words."""

from __future__ import annotations

import pytest

from cds_service.genomics.phenotype import legacy_wording, phenotype_from_text


@pytest.mark.parametrize(
    ("text", "phenotype"),
    [
        ("Ultrarapid metabolizer", "Ultrarapid Metabolizer"),
        ("ultra-rapid metaboliser", "Ultrarapid Metabolizer"),
        ("Rapid metabolizer", "Rapid Metabolizer"),
        ("Normal metabolizer", "Normal Metabolizer"),
        ("Extensive metabolizer", "Normal Metabolizer"),
        ("Intermediate Metabolizer", "Intermediate Metabolizer"),
        ("CYP2D6 Poor Metabolizer", "Poor Metabolizer"),
        ("CYP2D6: poor metabolizer (predicted)", "Poor Metabolizer"),
        ("Predicted poor metabolizer", "Poor Metabolizer"),
        ("PM", "Poor Metabolizer"),
        # the phrase with its abbreviation, as labs print it; only when the two agree
        ("Ultrarapid Metabolizer (UM)", "Ultrarapid Metabolizer"),
        ("Poor Metabolizer - PM", "Poor Metabolizer"),
        ("CYP2D6 intermediate metabolizer (IM)", "Intermediate Metabolizer"),
        ("Poor Metabolizer (UM)", None),
        ("Possible poor metabolizer (PM)", None),
        ("Likely poor metabolizer", "Likely Poor Metabolizer"),  # CPIC's own term
        # hedged, negated, combined or unclear: never a phenotype
        ("Probable poor metabolizer", None),
        ("Possible poor metabolizer", None),
        ("Suspected ultrarapid metabolizer", None),
        ("Presumed normal metabolizer", None),
        ("Not a poor metabolizer", None),
        ("Non-poor metabolizer", None),
        ("Indeterminate", None),
        ("poor or intermediate metabolizer", None),
        ("Poor/intermediate metabolizer", None),
        ("Normal", None),
        ("Consistent with poor metabolizer", None),
    ],
)
def test_phenotype_text(text, phenotype):
    assert phenotype_from_text(text, "CYP2D6", frozenset({"CYP2D6", "CYP2C19"})) == phenotype


def test_phenotype_text_naming_another_gene_is_not_read():
    assert (
        phenotype_from_text("CYP2C19 Poor Metabolizer", "CYP2D6", frozenset({"CYP2D6", "CYP2C19"}))
        is None
    )


@pytest.mark.parametrize(
    ("text", "legacy"),
    [
        ("Extensive metabolizer", True),
        ("CYP2D6 EM", True),
        ("Normal metabolizer", False),
        ("Intermediate metabolizer", False),
    ],
)
def test_pre_2019_wording_is_recognised(text, legacy):
    assert legacy_wording(text) is legacy
