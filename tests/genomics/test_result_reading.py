"""Reading one Observation (cds_service/genomics/result_reading.py): what it says, and why not."""

from __future__ import annotations

from builders import LOINC, genotype_obs, phenotype_obs

from cds_service.core.trace import Trace
from cds_service.genomics.result_reading import ResultReader


def reader(knowledge, needed=None):
    trace = Trace()
    return ResultReader("pat-1", knowledge, trace, lambda ref: None, None, needed), trace


def test_a_pre_2019_answer_code_is_read_as_todays_term_and_flagged(knowledge):
    obs = phenotype_obs("Normal Metabolizer")
    obs["valueCodeableConcept"] = {
        "coding": [{"system": LOINC, "code": "LA10316-0", "display": "Extensive metabolizer"}]
    }
    read, _ = reader(knowledge)
    [found] = read.interpret(obs)
    assert (found.phenotype, found.legacy) == ("Normal Metabolizer", True)
    assert found.reported_as == "Extensive metabolizer"


def test_a_genotype_whose_text_and_code_disagree_is_not_used(knowledge):
    obs = genotype_obs("*1/*1")
    obs["valueCodeableConcept"]["coding"] = [{"system": "http://www.pharmvar.org", "code": "*4/*4"}]
    read, _ = reader(knowledge)
    [found] = read.interpret(obs)
    assert found.phenotype == "Indeterminate" and "different diplotypes" in found.reason


def test_a_result_for_a_gene_no_ordered_drug_needs_is_not_read(knowledge):
    read, trace = reader(knowledge, needed=frozenset({"CYP2D6"}))
    assert read.interpret(genotype_obs("*3/*3", gene="CYP2C9")) == []
    assert "no ordered drug depends on it" in trace.render()


def test_structural_genotype_reading(knowledge):
    read, _ = reader(knowledge)
    [found] = read.interpret(genotype_obs("CYP2D6 *36+*10/*10"))
    assert (found.diplotype, found.activity_score_text) == ("*36+*10/*10", "0.5")
    assert found.phenotype == "Intermediate Metabolizer"
