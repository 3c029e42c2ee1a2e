"""The worklist's reads: paging within bounds, next links only on the FHIR server, the run's
budget beside each read's own, the server's capabilities, short URLs."""

from __future__ import annotations

import time

import pytest
from conftest import BASE, TOKEN, order, patient

from cds_service.worklist.reader import (
    MAX_QUERY,
    Capabilities,
    OutOfTime,
    Reader,
    SearchFailed,
    joined,
)

CODEINE = ("993781", "Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet")


def reader(engine, *, budget: float = 60, max_pages: int = 50, said: list[str] | None = None):
    return Reader(
        BASE,
        TOKEN,
        engine.settings,
        engine.session,
        budget=budget,
        max_pages=max_pages,
        progress=(said.append if said is not None else lambda _: None),
    )


def test_a_search_follows_every_page_with_the_token(fhir, engine):
    fhir.page_size = 2
    fhir.add(*[patient(f"p{i}") for i in range(5)])
    found = reader(engine).search("Patient?_count=100", "patients")
    assert [p["id"] for p in found] == ["p0", "p1", "p2", "p3", "p4"]
    assert len(fhir.requests) == 3
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in fhir.requests)


def test_a_search_longer_than_the_page_bound_fails_and_says_how_to_allow_it(fhir, engine):
    fhir.page_size = 1
    fhir.add(*[patient(f"p{i}") for i in range(4)])
    with pytest.raises(SearchFailed, match=r"more than 3 pages.*--max-pages"):
        reader(engine, max_pages=3).search("Patient?_count=100", "patients")
    assert len(fhir.requests) == 3  # the fourth page is never asked for


def test_a_next_link_off_the_fhir_server_is_not_followed(fhir, engine):
    """The token goes to the FHIR server only: a next link elsewhere (another host, or a
    path that climbs out of the base) ends the search as failed, unread."""
    fhir.add(patient("p1"))
    for elsewhere in ("https://evil.example/fhir/Patient?p=2", f"{BASE}/../admin?p=2"):
        fhir.next_url = elsewhere
        fhir.requests.clear()
        with pytest.raises(SearchFailed, match="outside the FHIR server"):
            reader(engine).search("Patient?_count=100", "patients")
        assert [r.url for r in fhir.requests] == [f"{BASE}/Patient?_count=100"]


def test_each_read_gets_the_hooks_budget_and_never_outlasts_the_run(engine):
    r = reader(engine, budget=100)
    start = time.monotonic()
    deadline = r.read_deadline()
    assert deadline - start == pytest.approx(engine.settings.fhir_budget, abs=0.5)
    short = reader(engine, budget=0.5)
    assert short.read_deadline() - start <= 0.6
    spent = reader(engine, budget=0.001)
    time.sleep(0.01)
    with pytest.raises(OutOfTime):
        spent.read_deadline()


def test_a_run_out_of_time_reads_nothing_more(fhir, engine):
    fhir.add(patient("p1"))
    r = reader(engine, budget=0.001)
    time.sleep(0.01)
    with pytest.raises(OutOfTime):
        r.search("Patient?_count=100", "patients")
    assert fhir.requests == []


def test_a_failing_page_fails_the_search_without_naming_the_patient(fhir, engine):
    fhir.fail = lambda url: 500
    with pytest.raises(SearchFailed) as failed:
        reader(engine).search("Observation?patient=secret-patient&_count=100", "results")
    assert "secret-patient" not in str(failed.value)


def test_long_searches_report_progress_without_ids(fhir, engine):
    fhir.page_size = 1
    fhir.add(*[order(f"o{i}", f"secret-{i}", CODEINE) for i in range(25)])
    said: list[str] = []
    found = reader(engine, said=said).search("MedicationRequest?_count=100", "orders")
    assert len(found) == 25
    assert said == ["orders: 20 pages, 20 resources so far"]


def test_capabilities_say_what_may_be_searched_and_included():
    listed = Capabilities.of(
        {
            "resourceType": "CapabilityStatement",
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        {
                            "type": "MedicationRequest",
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchInclude": ["MedicationRequest:patient"],
                        },
                        {"type": "MedicationStatement", "interaction": [{"code": "read"}]},
                        {"type": "Observation"},
                    ],
                }
            ],
        }
    )
    assert listed.searchable("MedicationRequest") and listed.searchable("Observation")
    assert not listed.searchable("MedicationStatement")  # read only
    assert not listed.searchable("Medication")  # not offered at all
    include = listed.include(
        "MedicationRequest", "MedicationRequest:subject", "MedicationRequest:patient"
    )
    assert include == "MedicationRequest:patient"
    assert listed.include("Observation", "Observation:subject") is None
    unknown = Capabilities(None)  # a server that lists nothing: try searches, no _include
    assert unknown.searchable("MedicationStatement")
    assert unknown.include("MedicationRequest", "MedicationRequest:subject") is None


def test_capabilities_unreadable_assume_nothing(fhir, engine):
    fhir.fail = lambda url: 404 if url.endswith("/metadata") else None
    assert reader(engine).capabilities() == Capabilities(None)


def test_values_are_spread_over_searches_that_stay_short():
    codes = [str(100000 + i) for i in range(1500)]
    queries = joined("MedicationRequest?", "code", codes, "&status=active,on-hold&_count=100")
    assert len(queries) > 1
    assert all(len(q) <= MAX_QUERY for q in queries)
    assert all(q.endswith("&status=active,on-hold&_count=100") for q in queries)
    back = [c for q in queries for c in q.split("code=")[1].split("&")[0].split(",")]
    assert back == codes
    assert joined("Task?", "identifier", []) == []
