"""Which orders the worklist finds: by the covered drugs' codes, active or on hold, through
Medication resources, and with ``--since`` the new ones and those of patients with new
results."""

from __future__ import annotations

from builders import phenotype_obs
from conftest import order, patient
from test_reader import reader

from cds_service.governance.site_config import SiteConfig
from cds_service.worklist.orders import Found, covered_codes, find_orders
from cds_service.worklist.reader import Capabilities

CODEINE = ("993781", "Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet")
OXYCODONE = ("1049621", "Oxycodone Hydrochloride 5 MG Oral Tablet")
CELECOXIB = ("205323", "celecoxib 200 MG Oral Capsule")
ALL = Capabilities(None)


def _codes_asked(searches: list[str]) -> set[str]:
    return {c for s in searches for c in s.split("code=")[1].split("&")[0].split(",")}


def test_orders_are_searched_by_every_covered_code_active_or_on_hold(fhir, engine, knowledge):
    fhir.add(
        order("on", "p1", CODEINE),
        order("held", "p2", CELECOXIB, status="on-hold"),
        order("done", "p3", CODEINE, status="completed"),
        order("oxy", "p4", OXYCODONE),  # a drug without a recommendation: not asked for
        order("taken", "p5", CODEINE, resource_type="MedicationStatement"),
    )
    found = find_orders(reader(engine), ALL, knowledge, SiteConfig(), None)
    assert sorted(found.orders) == [
        "MedicationRequest/held",
        "MedicationRequest/on",
        "MedicationStatement/taken",
    ]
    searches = fhir.searches("MedicationRequest")
    assert all("status=active,on-hold" in s and "_count=100" in s for s in searches)
    asked = _codes_asked(searches)
    assert asked == set(covered_codes(knowledge, SiteConfig()))
    assert {"993781", "205323", "2670"} <= asked and "1049621" not in asked
    assert _codes_asked(fhir.searches("MedicationStatement")) == asked
    assert found.problems == []


def test_an_order_the_server_sends_despite_its_status_is_not_judged():
    found = Found()
    found.add(
        [order("done", "p", CODEINE, status="completed"), order("unknown", "p", CODEINE)],
        "MedicationRequest",
    )
    assert list(found.orders) == ["MedicationRequest/unknown"]
    found.add([order("stopped", "p", CODEINE, status="stopped")], "MedicationRequest")
    assert list(found.orders) == ["MedicationRequest/unknown"]


def test_a_drug_switched_off_by_the_site_is_not_searched_for(knowledge):
    off = SiteConfig(drugs={"codeine": "off"})
    codes = covered_codes(knowledge, off)
    assert "2670" not in codes and "205323" in codes
    # a product with codeine and a drug still on stays (acetaminophen is not covered)
    assert "993781" not in codes


def test_patients_come_with_the_orders_where_the_server_declares_include(fhir, engine, knowledge):
    fhir.add(order("on", "p1", CODEINE), patient("p1"))
    fhir.capability = {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {"type": "MedicationRequest", "searchInclude": ["MedicationRequest:subject"]},
                    {"type": "Medication"},
                ],
            }
        ],
    }
    r = reader(engine)
    said: list[str] = []
    r.progress = said.append
    found = find_orders(r, r.capabilities(), knowledge, SiteConfig(), None)
    assert all(
        "_include=MedicationRequest:subject" in s
        for s in fhir.searches("MedicationRequest")
        if "code=" in s
    )
    assert list(found.patients) == ["p1"]
    # MedicationStatement is not offered by this server: not searched, and said so
    assert fhir.searches("MedicationStatement") == []
    assert "the server does not offer MedicationStatement search: not read" in said


def test_no_include_is_asked_of_a_server_that_does_not_declare_it(fhir, engine, knowledge):
    fhir.add(order("on", "p1", CODEINE), patient("p1"))
    found = find_orders(reader(engine), ALL, knowledge, SiteConfig(), None)
    assert not any("_include" in s for s in fhir.searches("MedicationRequest"))
    assert found.patients == {}


def test_orders_of_a_coded_medication_resource_are_found_through_it(fhir, engine, knowledge):
    medication = {
        "resourceType": "Medication",
        "id": "med-celecoxib",
        "code": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "205323"}]
        },
    }
    by_reference = {
        **order("ref", "p1", CELECOXIB),
        "medicationReference": {"reference": "Medication/med-celecoxib"},
    }
    del by_reference["medicationCodeableConcept"]
    fhir.add(medication, by_reference)
    found = find_orders(reader(engine), ALL, knowledge, SiteConfig(), None)
    assert list(found.orders) == ["MedicationRequest/ref"]
    assert list(found.medications) == ["Medication/med-celecoxib"]
    assert any(
        s.startswith("medication=Medication/med-celecoxib&status=active,on-hold")
        for s in fhir.searches("MedicationRequest")
    )


def test_since_reads_new_orders_and_the_orders_of_patients_with_new_results(
    fhir, engine, knowledge
):
    fhir.add(
        phenotype_obs("Poor Metabolizer", patient="tested"),
        order("old-order", "tested", CODEINE, written="2019-01-01"),
    )
    found = find_orders(reader(engine), ALL, knowledge, SiteConfig(), "2026-02-01T00:00:00+01:00")
    code_searches = [s for s in fhir.searches("MedicationRequest") if "code=" in s]
    assert all("_lastUpdated=ge2026-02-01T00:00:00+01:00" in s for s in code_searches)
    [results] = fhir.searches("Observation")
    assert "patient=" not in results and "_lastUpdated=ge2026-02-01" in results
    assert "code=" in results and "53040-2" in results  # the hooks' result codes
    assert any(
        s.startswith("patient=tested&status=active,on-hold")
        for s in fhir.searches("MedicationRequest")
    )
    assert list(found.orders) == ["MedicationRequest/old-order"]
    # the + of the time zone reached the server as a +, not as a space
    raw = next(r.url for r in fhir.requests if "/Observation?" in r.url)
    assert "%2B01:00" in raw or "%2B01%3A00" in raw


def test_a_failed_search_is_named_and_the_others_go_on(fhir, engine, knowledge):
    fhir.add(order("taken", "p5", CODEINE, resource_type="MedicationStatement"))
    fhir.fail = lambda url: 500 if "/MedicationRequest?" in url else None
    found = find_orders(reader(engine), ALL, knowledge, SiteConfig(), None)
    assert list(found.orders) == ["MedicationStatement/taken"]
    assert found.problems and all("MedicationRequest" in p for p in found.problems)
