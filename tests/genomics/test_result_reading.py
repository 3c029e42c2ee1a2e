"""Reading one Observation (cds_service/genomics/result_reading.py): what it says, and why not."""

from __future__ import annotations

from builders import LOINC, genotype_obs, implication_obs, phenotype_obs

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


# One test per rule of the module (issue 30, item 7): what counts, and how each shape is read.


def test_only_final_amended_or_corrected_results_count(knowledge):
    for status in ("preliminary", "registered", "entered-in-error", "cancelled", "unknown"):
        read, trace = reader(knowledge)
        assert read.interpret(phenotype_obs("Poor Metabolizer", status=status)) == [], status
        assert f"status '{status}'" in trace.render()
    for status in ("final", "amended", "corrected"):
        read, _ = reader(knowledge)
        [found] = read.interpret(phenotype_obs("Poor Metabolizer", status=status))
        assert found.phenotype == "Poor Metabolizer", status


def test_a_result_about_another_patient_is_ignored(knowledge):
    read, trace = reader(knowledge)
    assert read.interpret(genotype_obs("*4/*4", patient="someone-else")) == []
    assert "not the patient in context" in trace.render()


def test_an_amended_result_carries_when_it_was_revised(knowledge):
    obs = phenotype_obs("Poor Metabolizer", status="amended")
    obs["issued"] = "2024-05-02T10:00:00Z"
    read, _ = reader(knowledge)
    [found] = read.interpret(obs)
    assert found.revised is not None and found.revised.isoformat().startswith("2024-05-02")
    [final] = reader(knowledge)[0].interpret(dict(obs, status="final"))
    assert final.revised is None  # only an amended or corrected result replaces others


def test_a_phenotype_in_words_is_read_as_cpic_term(knowledge):
    read, _ = reader(knowledge)
    [found] = read.interpret(phenotype_obs("CYP2D6 poor metabolizer", as_text=True))
    assert (found.phenotype, found.legacy) == ("Poor Metabolizer", False)
    assert found.reported_as == "CYP2D6 poor metabolizer"


def test_a_hedged_or_unclear_phenotype_is_indeterminate_with_its_reason(knowledge):
    read, trace = reader(knowledge)
    [found] = read.interpret(phenotype_obs("see report", as_text=True))
    assert found.phenotype == "Indeterminate" and "not a clear metabolizer status" in found.reason
    assert "no usable result" in trace.render()
    [possible] = read.interpret(phenotype_obs("Possible Intermediate Metabolizer", as_text=True))
    assert possible.phenotype == "Indeterminate" and "Possible" in possible.reason


def test_a_result_without_a_value_is_indeterminate(knowledge):
    obs = phenotype_obs("Poor Metabolizer")
    del obs["valueCodeableConcept"]
    [found] = reader(knowledge)[0].interpret(obs)
    assert found.phenotype == "Indeterminate" and found.reason == "the result has no value"


def test_a_likely_phenotype_takes_the_advice_of_the_phenotype_it_names(knowledge):
    [found] = reader(knowledge)[0].interpret(phenotype_obs("Likely Poor Metabolizer", as_text=True))
    assert (found.phenotype, found.likely) == ("Poor Metabolizer", "Likely Poor Metabolizer")


def test_a_phenotype_with_its_activity_score_is_read_when_the_score_fits_the_band(knowledge):
    [found] = reader(knowledge)[0].interpret(
        phenotype_obs("Ultrarapid metabolizer (activity score 3.0)", as_text=True)
    )
    assert (found.phenotype, found.activity_score) == ("Ultrarapid Metabolizer", 3.0)
    [outside] = reader(knowledge)[0].interpret(
        phenotype_obs("Ultrarapid metabolizer (activity score 1.0)", as_text=True)
    )
    assert outside.phenotype == "Indeterminate" and "outside its phenotype's band" in outside.reason


def test_a_therapeutic_implication_is_read_from_its_component(knowledge):
    for component in ("therapeutic-implication", "predicted-therapeutic-implication"):
        obs = implication_obs("Ultrarapid Metabolizer", component_code=component)
        [found] = reader(knowledge)[0].interpret(obs)
        assert (found.gene, found.phenotype) == ("CYP2D6", "Ultrarapid Metabolizer"), component


def test_an_implication_names_its_gene_through_the_genotype_it_derives_from(knowledge):
    obs = implication_obs("Poor Metabolizer")
    obs["component"] = [c for c in obs["component"] if "48018-6" not in str(c["code"])]
    obs["derivedFrom"] = [{"reference": "Observation/geno-1"}]
    genotype = genotype_obs("*4/*4", gene="CYP2C19")
    trace = Trace()
    read = ResultReader("pat-1", knowledge, trace, {"Observation/geno-1": genotype}.get)
    [found] = read.interpret(obs)
    assert (found.gene, found.phenotype) == ("CYP2C19", "Poor Metabolizer")
    assert read.looked_up
    # unreadable target: the reference's display may still name the gene
    obs["derivedFrom"] = [{"reference": "Observation/gone", "display": "CYP2C9 genotype"}]
    [by_display] = ResultReader("pat-1", knowledge, Trace(), lambda ref: None).interpret(obs)
    assert by_display.gene == "CYP2C9"


def test_a_code_for_one_gene_with_a_component_naming_another_is_ignored(knowledge):
    obs = phenotype_obs("Poor Metabolizer", gene="CYP2C19")
    obs["code"] = {"coding": [{"system": LOINC, "code": "79715-9"}]}  # a CYP2D6-specific code
    read, trace = reader(knowledge)
    assert read.kind(obs).gene == "CYP2D6"
    assert read.interpret(obs) == []
    assert "gene-studied component names CYP2C19" in trace.render()


def test_a_genotype_naming_another_gene_is_indeterminate(knowledge):
    [found] = reader(knowledge)[0].interpret(genotype_obs("CYP2C19 *2/*2", gene="CYP2D6"))
    assert found.phenotype == "Indeterminate" and "names CYP2C19, not CYP2D6" in found.reason


def test_an_unreadable_diplotype_is_indeterminate(knowledge):
    [found] = reader(knowledge)[0].interpret(genotype_obs("see scanned report"))
    assert found.phenotype == "Indeterminate" and "not a diplotype" in found.reason


def test_a_haplotype_gives_one_allele_for_pooling(knowledge):
    obs = genotype_obs("CYP2D6*4.001 (PV00123)", where="string")
    obs["code"] = {"coding": [{"system": LOINC, "code": "84414-2"}]}
    [found] = reader(knowledge)[0].interpret(obs)
    assert (found.kind, found.diplotype) == ("haplotype", "*4")


def test_hla_typing_gives_each_marker_a_status(knowledge):
    [*found] = reader(knowledge)[0].interpret(
        genotype_obs("HLA-B*15:02:01+HLA-B*07:02", gene="HLA-B")
    )
    status = {f.gene: f.phenotype for f in found}
    assert status["HLA-B*15:02"] == "positive"
    assert all(v in ("positive", "negative") for v in status.values())
    [*negative] = reader(knowledge)[0].interpret(
        genotype_obs("HLA-B*07:02+HLA-B*08:01", gene="HLA-B")
    )
    assert {f.gene: f.phenotype for f in negative}["HLA-B*15:02"] == "negative"


def test_a_presence_result_is_read_from_its_code_boolean_or_words(knowledge):
    def presence(**value):
        obs = phenotype_obs("Poor Metabolizer")
        obs["code"] = {"coding": [{"system": LOINC, "code": "57979-7"}]}
        del obs["valueCodeableConcept"], obs["component"]
        obs.update(value)
        return obs

    coded = presence(valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA9633-4"}]})
    assert [f.phenotype for f in reader(knowledge)[0].interpret(coded)] == ["positive"]
    assert [f.phenotype for f in reader(knowledge)[0].interpret(presence(valueBoolean=False))] == [
        "negative"
    ]
    assert [
        f.phenotype for f in reader(knowledge)[0].interpret(presence(valueString="Detected"))
    ] == ["positive"]
    [unclear] = reader(knowledge)[0].interpret(presence(valueString="see comment"))
    assert unclear.phenotype == "Indeterminate" and "present/absent" in unclear.reason


def test_the_lab_is_kept_from_the_performer_and_cut_to_a_name(knowledge):
    obs = genotype_obs("*1/*1")
    obs["performer"] = [{"display": "Example Reference Lab " + "x" * 500}]
    [found] = reader(knowledge)[0].interpret(obs)
    assert found.performer.startswith("Example Reference Lab") and len(found.performer) == 120
