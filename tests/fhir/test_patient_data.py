"""Prefetch, fetching from the EHR's FHIR server, partial prefetch, and 412."""

from __future__ import annotations

import json
import re

import pytest
import requests
import responses
from builders import (
    APAP_CODEINE,
    NO_CHART,
    bundle,
    hook_request,
    is_results_search,
    med_order,
    phenotype_obs,
    with_results,
)

FHIR = "https://ehr.example.org/fhir"
SEARCH = re.compile(re.escape(FHIR) + r"/Observation\?.*")
UM = phenotype_obs("Ultrarapid Metabolizer")
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
NM = phenotype_obs("Normal Metabolizer")
EMPTY_SEARCH = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "warning",
            "code": "processing",
            "diagnostics": "Resource request returns no results.",
        }
    ],
}


def codeine_request(**kwargs):
    return hook_request("order-select", [med_order(APAP_CODEINE)], **kwargs)


@responses.activate
def test_prefetch_is_used_without_querying(call):
    prefetch = {**with_results(UM), "patient": None, "activeMedications": None, **NO_CHART}
    prefetch["medicationStatements"] = None
    status, answer = call(codeine_request(prefetch=prefetch, fhir_server=FHIR, token="t"))
    assert status == 200 and len(answer["cards"]) == 1
    assert len(responses.calls) == 0


@responses.activate
def test_without_prefetch_the_service_queries_with_the_bearer_token(call):
    responses.get(SEARCH, json=bundle(UM))
    status, answer = call(codeine_request(fhir_server=FHIR, token="secret-token"))
    assert status == 200 and len(answer["cards"]) == 1
    [sent] = [c for c in responses.calls if is_results_search(c.request.url)]
    assert sent.request.headers["Authorization"] == "Bearer secret-token"
    url = sent.request.url
    assert "patient=pat-1" in url and "84413-4" in url and "53040-2" in url


@responses.activate
def test_search_values_are_sent_percent_encoded(call):
    """``code=http%3A%2F%2Floinc.org%7C…``: a proxy in front of the FHIR server (the SMART
    launcher's) collapses the ``//`` of a system URI sent as written, and then finds nothing.
    FHIR's "or" commas stay as they are."""
    responses.get(SEARCH, json=bundle(UM))
    status, _ = call(codeine_request(fhir_server=FHIR, token="t"))
    assert status == 200
    [sent] = [c for c in responses.calls if is_results_search(c.request.url)]
    query = sent.request.url.split("?", 1)[1]
    assert "//" not in query and "|" not in query and ":" not in query
    assert query.startswith("patient=pat-1&code=http%3A%2F%2F") and "%7C84413-4," in query
    assert ",http%3A%2F%2Floinc.org%7C" in query


@responses.activate
def test_partial_prefetch_fetches_only_the_missing_key(call):
    """Patient prefetched, genomic results not: the service fetches those itself."""
    responses.get(SEARCH, json=bundle(UM))
    body = codeine_request(
        prefetch={
            "patient": {"resourceType": "Patient", "id": "pat-1"},
            "activeMedications": None,
            "medicationStatements": None,
            **NO_CHART,
        },
        fhir_server=FHIR,
        token="t",
    )
    assert len(call(body)[1]["cards"]) == 1
    assert len(responses.calls) == 1


@responses.activate
def test_null_prefetch_means_no_data_and_no_query(call):
    body = codeine_request(
        prefetch={
            "genomicResults": None,
            "patient": None,
            "activeMedications": None,
            "medicationStatements": None,
            **NO_CHART,
        },
        fhir_server=FHIR,
        token="t",
    )
    assert call(body) == (200, {"cards": []})
    assert len(responses.calls) == 0


@responses.activate
def test_operation_outcome_in_prefetch_triggers_a_query(call):
    responses.get(SEARCH, json=bundle(UM))
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    body = codeine_request(prefetch={"genomicResults": outcome}, fhir_server=FHIR, token="t")
    assert len(call(body)[1]["cards"]) == 1


@responses.activate
@pytest.mark.parametrize(
    ("entries", "queried"),
    [
        ([{"resource": OUTCOME}], True),  # the client's error, as a Bundle: ask the server
        (["not an entry", {"resource": OUTCOME}, {"resource": OUTCOME}], True),
        ([{"resource": OUTCOME}, {"resource": UM}], False),  # results beside a warning: used
        ([{"resource": UM}, {"resource": OUTCOME}], False),
        ([], False),  # an empty Bundle: no results, nothing to ask
        ([{"search": {}}], False),  # an entry without a resource is not an error report
        # Epic's empty search: a Bundle holding one warning about the search itself
        ([{"resource": EMPTY_SEARCH, "search": {"mode": "outcome"}}], False),
        # the same, but an error about the search: the client failed
        ([{"resource": OUTCOME, "search": {"mode": "outcome"}}], True),
        # a warning not marked as the search's own outcome: the client's error report
        ([{"resource": EMPTY_SEARCH}], True),
    ],
)
def test_a_prefetched_bundle_of_operation_outcomes_only_is_the_clients_error(
    call, entries, queried
):
    responses.get(SEARCH, json=bundle(UM))
    prefetch = {"genomicResults": {"resourceType": "Bundle", "type": "searchset", "entry": entries}}
    status, answer = call(codeine_request(prefetch=prefetch, fhir_server=FHIR, token="t"))
    assert status == 200
    searched = [c for c in responses.calls if is_results_search(c.request.url)]
    assert bool(searched) is queried
    has_um = queried or any(isinstance(e, dict) and e.get("resource") is UM for e in entries)
    assert len(answer["cards"]) == (1 if has_um else 0)


def test_operation_outcome_without_fhir_server_is_412(call):
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception"}],
    }
    status, answer = call(codeine_request(prefetch={"genomicResults": outcome}))
    assert status == 412
    assert answer["missingPrefetch"] == ["genomicResults"]


def test_no_prefetch_and_no_fhir_server_is_412(call):
    status, answer = call(codeine_request())
    assert status == 412
    assert "genomicResults" in answer["error"] and "fhirServer" in answer["error"]


@responses.activate
@pytest.mark.parametrize("failure", [401, 403, 500, "timeout", "refused"])
def test_unreachable_or_refusing_server_is_412(call, failure):
    if failure == "timeout":
        responses.get(SEARCH, body=requests.Timeout())
    elif failure == "refused":
        responses.get(SEARCH, body=requests.ConnectionError("refused"))
    else:
        responses.get(SEARCH, status=failure, json={"resourceType": "OperationOutcome"})
    status, answer = call(codeine_request(fhir_server=FHIR, token="t"))
    assert status == 412
    assert answer["missingPrefetch"] == ["genomicResults"]
    assert "secret" not in str(answer)


@responses.activate
def test_next_links_are_followed(call):
    page2 = f"{FHIR}/Observation?page=2"
    responses.get(
        SEARCH, match=[responses.matchers.query_param_matcher({"page": "2"})], json=bundle(UM)
    )
    body = codeine_request(
        prefetch={"genomicResults": bundle(next_url=page2)}, fhir_server=FHIR, token="t"
    )
    assert len(call(body)[1]["cards"]) == 1


@responses.activate
def test_next_link_to_another_host_is_not_followed_with_the_token(call):
    body = codeine_request(
        prefetch={"genomicResults": bundle(next_url="https://evil.example.com/x")},
        fhir_server=FHIR,
        token="t",
    )
    status, _ = call(body)
    assert status == 412
    # nothing went to the other host (the reads made alongside stay on the FHIR server)
    assert all(c.request.url.startswith(FHIR) for c in responses.calls)


@responses.activate
def test_page_bound(call, app):
    """A server that returns next links forever is cut off, not followed forever."""
    endless = bundle(NM, next_url=f"{FHIR}/Observation?page=more")
    responses.get(SEARCH, json=endless)
    status, _ = call(codeine_request(fhir_server=FHIR, token="t"))
    assert status == 412
    pages = [c for c in responses.calls if is_results_search(c.request.url)]
    assert len(pages) == app.extensions["pgx"].engine.settings.fhir_max_pages


@responses.activate
def test_no_query_when_no_covered_drug_is_ordered(call):
    amoxicillin = med_order(("617993", "Amoxicillin"))
    body = hook_request("order-sign", [amoxicillin], fhir_server=FHIR, token="t")
    assert call(body) == (200, {"cards": []})
    assert len(responses.calls) == 0


@responses.activate
def test_a_fhir_answer_holding_nan_is_not_read_and_not_alerted_on(call, caplog):
    """NaN is not JSON: an answer that holds one is unreadable (412, no card), never read as
    if the value were null (the results' caches key by JSON that writes NaN as null)."""
    odd = {**UM, "valueQuantity": {"value": "NAN_HERE"}}
    raw = json.dumps(bundle(odd)).replace('"NAN_HERE"', "NaN")
    responses.get(SEARCH, body=raw, content_type="application/fhir+json")
    status, answer = call(codeine_request(fhir_server=FHIR, token="t"))
    assert status == 412 and "cards" not in answer
    assert "the answer is not JSON" in caplog.text
