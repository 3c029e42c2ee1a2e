"""The FDA label rules' data (knowledge/rules/label_rules.json): every rule cites its FDA
communication, every code group says what it is and where it comes from, and the RxNorm
products the cough-and-cold rule needs are known and marked (built by build_knowledge.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from cds_service.knowledge.loader import Knowledge, KnowledgeError
from cds_service.settings import default_knowledge_dir

ROOT = Path(__file__).resolve().parents[2]


def test_every_rule_cites_an_fda_communication_with_date_and_url(knowledge):
    rules = {r.id: r for r in knowledge.label_rules}
    assert {
        "codeine-under-12",
        "tramadol-under-12",
        "dihydrocodeine-under-12",
        "codeine-tonsillectomy-under-18",
        "tramadol-tonsillectomy-under-18",
        "dihydrocodeine-tonsillectomy-under-18",
        "codeine-cough-cold-under-18",
        "hydrocodone-cough-cold-under-18",
        "codeine-breastfeeding",
        "tramadol-breastfeeding",
        "codeine-12-to-18-breathing-risk",
        "tramadol-12-to-18-breathing-risk",
        "dihydrocodeine-12-to-18-breathing-risk",
    } <= set(rules)
    for rule in rules.values():
        assert rule.source.organization == "FDA" and rule.source.url.startswith("https://")
        assert rule.source.date and rule.source.title and rule.source.section, rule.id
        assert len(rule.summary) < 140 and len(rule.possible_summary) < 140
    # the label's words decide the indicator: contraindications critical, the rest warnings
    for rule in rules.values():
        contraindication = "contraindicated" in rule.summary
        assert rule.indicator == ("critical" if contraindication else "warning"), rule.id
    assert rules["codeine-cough-cold-under-18"].source.date == "2018-01-11"
    assert rules["codeine-breastfeeding"].source.date == "2017-04-20"


def test_every_code_group_says_what_it_is_and_where_it_comes_from(knowledge):
    findings = knowledge.label_rule_file.findings
    assert set(findings) == {
        "tonsillectomy",
        "obesity",
        "sleep-apnoea",
        "severe-lung-disease",
        "breastfeeding",
    }
    for name, finding in findings.items():
        groups = [*finding.codes, *finding.possible_codes]
        if finding.observation is not None:
            groups += finding.observation.codes + finding.observation.positive
        for group in groups:
            assert len(group.what) > 10 and len(group.source) > 10, name
    obesity = findings["obesity"].codes[0]
    assert (obesity.prefixes, obesity.excluding) == (["E66"], ["E66.3"])


def test_the_opioid_cough_and_cold_products_are_known_and_marked(knowledge):
    marked = knowledge.cough_cold_products
    for rxcui in ("991486", "995226", "857510", "992656", "992671"):  # Hycodan among them
        assert rxcui in marked, rxcui
    for rxcui in ("993781", "856999", "1234871"):  # pain products: APAP/codeine, ...
        assert rxcui not in marked, rxcui
    assert "codeine" in knowledge.products["991486"]  # promethazine/codeine is codeine
    assert "hydrocodone" in knowledge.products["857510"]


def test_a_rule_naming_an_unknown_finding_stops_the_service(tmp_path):
    copy = tmp_path / "knowledge"
    shutil.copytree(default_knowledge_dir(), copy)
    path = copy / "rules" / "label_rules.json"
    data = json.loads(path.read_text())
    data["rules"][0]["requires"] = ["asthma"]
    path.write_text(json.dumps(data))
    with pytest.raises(KnowledgeError, match="unknown finding 'asthma'"):
        Knowledge(copy)


def test_the_build_marks_cough_and_cold_products(tmp_path):
    """build_knowledge.build_products on a small RxNorm table: an opioid with a cough or
    cold ingredient is marked, whole words only, pain combinations are not."""
    spec = importlib.util.spec_from_file_location("build", ROOT / "scripts" / "build_knowledge.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    rx = tmp_path / "rxnorm"
    rx.mkdir()
    columns = ["rxcui", "name", "dose_form", "opioid_ingredient_rxcui", "opioid_ingredient"]
    rows = [
        ["1", "codeine 2 MG/ML / promethazine 1.25 MG/ML Oral Solution", "", "2670", "Codeine"],
        ["2", "acetaminophen 300 MG / codeine 30 MG Oral Tablet", "", "2670", "Codeine"],
        [
            "3",
            "homatropine 1.5 MG / hydrocodone 5 MG Oral Tablet [Tussigon]",
            "",
            "5489",
            "Hydrocodone",
        ],
        ["4", "meperidine 50 MG / promethazine 25 MG Oral Capsule", "", "6754", "Meperidine"],
    ]
    with (rx / "opioid_products.tsv").open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(columns)
        writer.writerows(rows)
    for name, header in (
        ("nsaid_products.tsv", ["rxcui", "name", "ingredient"]),
        ("sandbox_medication_names_pain.tsv", ["rxcui", "name", "ingredients_named"]),
    ):
        (rx / name).write_text("\t".join(header) + "\n")
    drugs = {
        "codeine": {"rxcui": None},
        "hydrocodone": {"rxcui": None},
        "meperidine": {"rxcui": None},
        "acetaminophen": {"rxcui": None},
    }
    rules = json.loads((ROOT / "knowledge" / "rules" / "label_rules.json").read_text())
    products = build.build_products(tmp_path, drugs, rules["cough_cold"])
    assert products["1"].get("cough_cold") is True
    assert products["3"].get("cough_cold") is True
    assert "cough_cold" not in products["2"]  # a pain product
    assert "cough_cold" not in products["4"]  # meperidine is not a cough opioid
