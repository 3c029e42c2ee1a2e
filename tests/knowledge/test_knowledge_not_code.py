"""Clinical knowledge is read from the knowledge files, not written in code (issue 30, item 3):
the CYP2D6 activity-score bands (genes/CYP2D6.json), the direction of phenotypes
(rules/phenotype_order.json), the genes whose copies a genotype may miss (genes/<GENE>.json
``copy_number``) and the genes an interacting drug can change (interactions/*.json). Each test
edits a copy of the knowledge and shows the code following the edit."""

from __future__ import annotations

import ast
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cds_service.clinical.interactions import functional_phenotype
from cds_service.genomics.gene_decision import decide
from cds_service.genomics.result_reading import Finding
from cds_service.knowledge.loader import Knowledge
from cds_service.settings import default_knowledge_dir


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "knowledge"
    shutil.copytree(default_knowledge_dir(), target)
    return target


def edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_the_cyp2d6_bands_are_read_from_the_gene_file(knowledge, copy):
    assert functional_phenotype("CYP2D6", 1.0, knowledge) == "Intermediate Metabolizer"
    assert functional_phenotype("CYP2D6", 1.1, knowledge) == "Intermediate Metabolizer"
    assert functional_phenotype("CYP2D6", 2.3, knowledge) == "Ultrarapid Metabolizer"

    def lower_normal(gene: dict[str, Any]) -> None:  # as CPIC before 2019: AS 1 was normal
        for band in gene["phenotype_bands"]:
            if band["phenotype"] == "Intermediate Metabolizer":
                band["max"] = 0.5
            if band["phenotype"] == "Normal Metabolizer":
                band["min"] = 1.0

    edit(copy / "genes" / "CYP2D6.json", lower_normal)
    edited = Knowledge(copy)
    assert functional_phenotype("CYP2D6", 1.0, edited) == "Normal Metabolizer"
    assert functional_phenotype("CYP2D6", 0.75, edited) == "Intermediate Metabolizer"


def test_a_gene_without_bands_has_no_functional_phenotype(knowledge):
    assert functional_phenotype("CYP2C19", 1.0, knowledge) is None


def test_the_direction_of_phenotypes_is_read_from_the_rules_file(knowledge, copy):
    """A score between two bands goes toward normal function, except into the normal band;
    which band is normal is the file's."""
    assert knowledge.direction("Poor Metabolizer") == (-1, 2)
    assert knowledge.direction("Ultrarapid Metabolizer") == (1, 2)
    assert functional_phenotype("CYP2D6", 1.1, knowledge) == "Intermediate Metabolizer"

    def not_normal(order: dict[str, Any]) -> None:
        order["phenotypes"]["Normal Metabolizer"] = {"direction": -1, "distance": 0}
        order["phenotypes"]["Rapid Metabolizer"] = {"direction": 0, "distance": 0}

    edit(copy / "rules" / "phenotype_order.json", not_normal)
    edited = Knowledge(copy)
    assert edited.direction("Normal Metabolizer") == (-1, 0)
    # no longer the closed normal band: 1.1 goes toward it
    assert functional_phenotype("CYP2D6", 1.1, edited) == "Normal Metabolizer"


def _finding(phenotype: str, year: int, diplotype: str, score: float) -> Finding:
    return Finding(
        gene="CYP2D6",
        kind="genotype",
        phenotype=phenotype,
        observation=f"Observation/g-{year}",
        date=datetime(year, 1, 1, tzinfo=UTC),
        date_text=f"{year}-01-01",
        diplotype=diplotype,
        activity_score=score,
    )


def test_copy_number_genes_are_read_from_the_gene_files(knowledge, copy):
    old = _finding("Normal Metabolizer", 2018, "*1/*1", 2.0)
    new = _finding("Ultrarapid Metabolizer", 2024, "*1/*1x2", 3.0)
    assert knowledge.copy_number_gene("CYP2D6") and not knowledge.copy_number_gene("CYP2C9")
    assert not decide([old, new], knowledge).discordant  # the newer test counted copies

    edit(copy / "genes" / "CYP2D6.json", lambda gene: gene.pop("copy_number"))
    edited = Knowledge(copy)
    assert not edited.copy_number_gene("CYP2D6")
    assert decide([old, new], edited).discordant  # nothing explains the difference now


def test_the_genes_an_inhibitor_can_change_are_the_interaction_files(knowledge, copy):
    assert knowledge.phenoconversion_genes == {"CYP2D6", "CYP2C9", "CYP2C19"}
    (copy / "interactions" / "cyp2c19_inhibitors.json").unlink()
    edited = Knowledge(copy)
    assert edited.phenoconversion_genes == {"CYP2D6", "CYP2C9"}
    assert "fluvoxamine" not in edited.inhibitor_named


def test_no_clinical_table_is_written_in_the_code():
    """The tables moved into knowledge/ are not repeated in the modules that use them."""
    root = Path(__file__).resolve().parents[2] / "cds_service"
    interactions = (root / "clinical" / "interactions.py").read_text()
    numbers = {
        node.value
        for node in ast.walk(ast.parse(interactions))
        if isinstance(node, ast.Constant) and isinstance(node.value, float)
    }
    assert not numbers & {1.25, 2.25, 0.5}  # no band or multiplier (docstrings may cite them)
    assert "_DIRECTION" not in (root / "clinical" / "severity.py").read_text()
    assert "COPY_NUMBER_GENES" not in (root / "genomics" / "gene_decision.py").read_text()
    assert 'GENE = "CYP2D6"' not in interactions
