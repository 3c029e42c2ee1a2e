"""The knowledge loads, is sourced, and a broken row is caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cds_service.knowledge.loader import Knowledge, KnowledgeError
from cds_service.settings import default_knowledge_dir


def test_every_row_is_sourced(knowledge):
    assert knowledge.recommendations
    for rec in knowledge.recommendations:
        g = rec.guideline
        assert g is not None and g.url.startswith("https://") and g.year
        # CPIC and DPWG rows cite their publication; FDA rows cite the label
        assert (g.pmid or "").isdigit() or g.organization == "FDA"
        assert rec.table and rec.strength


def test_no_internal_notes_or_outdated_wording_on_cards(knowledge):
    for rec in knowledge.recommendations:
        text = f"{rec.table} {rec.implication} {rec.recommendation}".lower()
        assert "not confirmed" not in text and "todo" not in text, rec.id
    tramadol_um = next(r for r in knowledge.recommendations if r.id == "tramadol-cyp2d6-um")
    assert "serotonergic" not in tramadol_um.implication
    assert "o-desmethyltramadol" in tramadol_um.implication.lower()


def test_methadone_cyp2b6_is_a_reviewed_no_recommendation(knowledge):
    pairs = {(n.drug, n.gene): g for g, n in knowledge.no_recommendations()}
    assert pairs[("methadone", "CYP2B6")].pmid == "38863207"
    assert all(p.gene != "CYP2B6" for p in knowledge.not_covered.pairs)


def test_codeine_product_codes_resolve_to_the_ingredient(knowledge):
    assert knowledge.products["993781"] >= {"codeine", "acetaminophen"}
    assert "codeine" in knowledge.products["2670"]


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    copy = tmp_path / "knowledge"
    shutil.copytree(default_knowledge_dir(), copy)
    return copy


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_row_without_source_table_is_rejected(broken):
    _edit(
        broken / "recommendations" / "cpic-opioids-2021.json",
        lambda d: d["recommendations"][0].pop("table"),
    )
    with pytest.raises(KnowledgeError, match="table"):
        Knowledge(broken)


def test_unknown_action_is_rejected(broken):
    _edit(
        broken / "recommendations" / "cpic-opioids-2021.json",
        lambda d: d["recommendations"][0].update(action="panic"),
    )
    with pytest.raises(KnowledgeError, match="action"):
        Knowledge(broken)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: r.update(gene="CYP9Z9"), "no allele table for CYP9Z9"),
        (lambda r: r.update(activity_values={"*999": 0.5}), r"\*999 is not in the CYP2D6 table"),
        (lambda r: r.update(activity_values_by_function={"Magic": 1}), "function 'Magic'"),
        (lambda r: r["source"].pop("citation"), "citation"),
    ],
)
def test_a_former_phenotype_rule_that_does_not_fit_its_table_is_reported(broken, change, problem):
    """A former CPIC rule decides which disagreements are only a re-labelling: a wrong one
    would hide a discordance, so it is checked against the gene's table at start-up."""
    _edit(broken / "rules" / "former_phenotypes.json", lambda d: change(d["rules"][0]))
    with pytest.raises(KnowledgeError, match=problem):
        Knowledge(broken)


def test_missing_phenotype_row_is_reported(broken):
    _edit(
        broken / "recommendations" / "cpic-opioids-2021.json",
        lambda d: d.update(
            recommendations=[r for r in d["recommendations"] if r["id"] != "codeine-cyp2d6-im"]
        ),
    )
    with pytest.raises(KnowledgeError, match=r"codeine/CYP2D6: no row .* Intermediate Metabolizer"):
        Knowledge(broken)


def test_drug_without_codes_is_reported(broken):
    _edit(
        broken / "drugs.json",
        lambda d: d["drugs"].update(newdrug={"rxcui": "999999999", "class": "x"}),
    )
    with pytest.raises(KnowledgeError, match="newdrug"):
        Knowledge(broken)


def test_service_refuses_to_start_on_broken_knowledge(broken, tmp_path):
    from cds_service.settings import Settings
    from cds_service.web.app import create_app

    (broken / "manifest.json").write_text("{")
    with pytest.raises(KnowledgeError):
        create_app(Settings(knowledge_dir=broken, database_url=f"sqlite:///{tmp_path / 'x.db'}"))


def test_knowledge_check_command_passes_and_fails(broken, capsys):
    from cds_service.cli import main

    assert main(["knowledge", "check", "--dir", str(broken)]) == 0
    assert "OK" in capsys.readouterr().out
    _edit(
        broken / "recommendations" / "cpic-nsaids-2020.json",
        lambda d: d["recommendations"][0]["when"]["CYP2C9"].update(activity_score_min=9.0),
    )
    assert main(["knowledge", "check", "--dir", str(broken)]) == 1
    assert "FAILED" in capsys.readouterr().err
