"""The hooks' prefetch templates, read for many patients at once and split by patient."""

from __future__ import annotations

from builders import is_results_search, phenotype_obs
from conftest import BASE, order, patient
from test_reader import reader

from cds_service.fhir.queries import prefetch_templates
from cds_service.worklist.prefetch import batched, read_prefetch, split

TEMPLATE = "Observation?patient={{context.patientId}}&code=http://loinc.org|53040-2&_count=100"
PAROXETINE = ("32937", "paroxetine")


def test_templates_by_patient_become_one_search_for_many():
    assert batched(TEMPLATE)(["a", "b"]) == (
        "Observation?patient=a,b&code=http://loinc.org|53040-2&_count=100"
    )
    subject = batched("MedicationStatement?subject=Patient/{{context.patientId}}&status=active")
    assert subject(["a", "b"]) == "MedicationStatement?subject=Patient/a,Patient/b&status=active"
    assert batched("Patient/{{context.patientId}}")(["a", "b"]) == "Patient?_id=a,b&_count=100"
    # other shapes are left to the prescribing code (per patient)
    assert batched("Observation?code=x") is None
    assert batched("Patient/{{context.patientId}}/$everything") is None
    assert batched("Encounter?patient={{context.patientId}}&x={{context.patientId}}") is None


def test_every_template_of_the_hooks_is_batched(knowledge):
    assert all(batched(t) for t in prefetch_templates(knowledge).values())


def test_resources_are_split_by_the_patient_they_are_about():
    mine = phenotype_obs("Poor Metabolizer", patient="a", obs_id="o1")
    absolute = {
        **phenotype_obs("Poor Metabolizer", obs_id="o2"),
        "subject": {"reference": f"{BASE}/Patient/b"},
    }
    other = phenotype_obs("Poor Metabolizer", patient="zz", obs_id="o3")
    medication = {"resourceType": "Medication", "id": "m1", "code": {"coding": []}}
    uses = {**order("r1", "b", ("1", "x")), "medicationReference": {"reference": "Medication/m1"}}
    found = split([mine, absolute, other, medication, uses], {"a", "b"})
    assert [r["id"] for r in found["a"]] == ["o1"]
    # the Medication sent beside (``_include``) goes to the patient whose order points at it
    assert [r["id"] for r in found["b"]] == ["o2", "r1", "m1"]


def test_a_group_of_patients_is_read_with_one_search_per_template(fhir, engine, knowledge):
    fhir.add(
        patient("a"),
        patient("b", birth_date="2019-02-01"),
        phenotype_obs("Poor Metabolizer", patient="a", obs_id="pa"),
        phenotype_obs("Ultrarapid Metabolizer", patient="b", obs_id="pb"),
        order("paroxetine-a", "a", PAROXETINE),
    )
    templates = prefetch_templates(knowledge)
    prefetch, failed = read_prefetch(reader(engine), templates, ["a", "b", "c"])
    assert failed == []
    assert len(fhir.requests) == len(templates)  # one search each, for all three patients
    assert "patient=a,b,c" in fhir.searches("Observation")[0]
    assert fhir.searches("Patient") == ["_id=a,b,c&_count=100"]
    results = prefetch["a"]["genomicResults"]
    assert [e["resource"]["id"] for e in results["entry"]] == ["pa"]
    assert prefetch["b"]["patient"]["birthDate"] == "2019-02-01"
    medications = prefetch["a"]["activeMedications"]["entry"]
    assert [e["resource"]["id"] for e in medications] == ["paroxetine-a"]
    # nothing on file: an empty answer (as an EHR's prefetch says), no patient: left to read
    assert prefetch["c"]["genomicResults"]["entry"] == []
    assert "patient" not in prefetch["c"]


def test_a_failed_batched_search_leaves_its_key_to_the_prescribing_code(fhir, engine, knowledge):
    fhir.add(patient("secret-7"), phenotype_obs("Poor Metabolizer", patient="secret-7"))
    # the genomic search fails (not the breastfeeding-status search, an Observation search too)
    fhir.fail = lambda url: 503 if is_results_search(url) else None
    said: list[str] = []
    prefetch, failed = read_prefetch(
        reader(engine, said=said), prefetch_templates(knowledge), ["secret-7"]
    )
    assert failed == ["genomicResults"]
    assert "genomicResults" not in prefetch["secret-7"] and "patient" in prefetch["secret-7"]
    assert said and "read per patient" in said[0] and "secret" not in said[0]


def test_patients_already_sent_are_not_asked_for_again(fhir, engine, knowledge):
    templates = {"patient": "Patient/{{context.patientId}}"}
    known = {"patient": {"a": [patient("a")]}}
    fhir.add(patient("b"))
    prefetch, _ = read_prefetch(reader(engine), templates, ["a", "b"], known)
    assert fhir.searches("Patient") == ["_id=b&_count=100"]
    assert prefetch["a"]["patient"]["id"] == "a" and prefetch["b"]["patient"]["id"] == "b"


def test_an_id_that_is_no_fhir_id_is_not_put_in_a_batched_search(fhir, engine):
    templates = {"genomicResults": TEMPLATE}
    prefetch, _ = read_prefetch(reader(engine), templates, ["ok-1", "a,b", "x&y=1"])
    assert fhir.searches("Observation") == ["patient=ok-1&code=http://loinc.org|53040-2&_count=100"]
    assert "genomicResults" not in prefetch["a,b"]  # read by the prescribing code, quoted


def test_many_patients_are_read_in_groups_that_keep_the_url_short(fhir, engine):
    ids = [f"{'x' * 58}-{i:04d}" for i in range(40)]  # FHIR ids are up to 64 characters
    read_prefetch(reader(engine), {"genomicResults": TEMPLATE}, ids)
    searches = fhir.searches("Observation")
    assert len(searches) > 1 and all(len(s) < 2100 for s in searches)
    named = [p for s in searches for p in s.split("patient=")[1].split("&")[0].split(",")]
    assert named == ids
