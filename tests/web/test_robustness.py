"""Odd and hostile input: never a 500, never a wrong alert, never a token sent astray."""

from __future__ import annotations

import copy
import re

import pytest
import responses
from builders import (
    APAP_CODEINE,
    NO_CHART,
    genotype_obs,
    hook_request,
    is_results_search,
    med_order,
    phenotype_obs,
    with_results,
)

FHIR = "https://ehr.example.org/fhir"
CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")
GOOD = phenotype_obs("Poor Metabolizer", obs_id="good")


def _mutations():
    """(name, function that breaks an Observation or a request) pairs."""

    def obs(change):
        def apply(body):
            bad = genotype_obs("*1/*1", "CYP2C9", obs_id="bad")
            change(bad)
            body["prefetch"]["genomicResults"]["entry"].append({"resource": bad})

        return apply

    return {
        "component is a number": obs(lambda o: o.update(component=5)),
        "component items are strings": obs(lambda o: o.update(component=["x"])),
        "coding is a number": obs(lambda o: o["code"].update(coding=5)),
        "coding items are strings": obs(lambda o: o["code"].update(coding=["x", 3])),
        "value is a list": obs(lambda o: o.update(valueCodeableConcept=[1, 2])),
        "gene value is a string": obs(lambda o: o["component"][0].update(valueCodeableConcept="x")),
        "status is a list": obs(lambda o: o.update(status=["final"])),
        "valueString is a number": obs(
            lambda o: (o.pop("valueCodeableConcept"), o.update(valueString=5))
        ),
        "effectivePeriod is a string": obs(lambda o: o.update(effectivePeriod="2024")),
        "subject is a string": obs(lambda o: o.update(subject="Patient/pat-1")),
        "derivedFrom is a number": obs(lambda o: o.update(derivedFrom=5)),
        "resource is a string": lambda b: b["prefetch"]["genomicResults"]["entry"].append(
            {"resource": "x"}
        ),
        "entry item is a number": lambda b: b["prefetch"]["genomicResults"]["entry"].append(7),
        "unicode everywhere": obs(lambda o: o.update(valueString="CYP2D6 *１/*４ ☃", id="☃")),
        "huge number": obs(lambda o: o.update(valueQuantity={"value": 10**400})),
    }


@pytest.mark.parametrize("name", list(_mutations()))
def test_a_malformed_result_is_ignored_and_good_ones_still_alert(call, name):
    body = hook_request(
        "order-select", [med_order(APAP_CODEINE)], prefetch=with_results(copy.deepcopy(GOOD))
    )
    _mutations()[name](body)
    status, answer = call(body)
    assert status == 200, answer
    [card] = answer["cards"]
    assert "poor metabolizer" in card["summary"]


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b["prefetch"]["genomicResults"].update(entry=5),
        lambda b: b["prefetch"]["genomicResults"].update(link=5),
        lambda b: b["prefetch"].update(genomicResults="nope"),
        lambda b: b["prefetch"].update(genomicResults=[1, "x"]),
        lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].update(medication="codeine"),
        lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].update(
            medicationCodeableConcept=5
        ),
        lambda b: b["context"]["draftOrders"]["entry"][0]["resource"][
            "medicationCodeableConcept"
        ].update(coding=5),
        lambda b: b["context"]["draftOrders"].update(entry=[5, "x", {"resource": 3}]),
        lambda b: b["context"].update(selections=[]),
    ],
)
def test_odd_shapes_never_give_a_500(call, change):
    body = hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=with_results(GOOD))
    change(body)
    status, answer = call(body)
    assert status in (200, 400, 412), answer
    assert "error" in answer or "cards" in answer


def test_deeply_nested_json_is_a_400(client):
    response = client.post(
        "/cds-services/pgx-order-select", data=b"[" * 100_000, content_type="application/json"
    )
    assert response.status_code == 400


# -- HLA haplotypes -------------------------------------------------------------------------


def hla(value, kind="84413-4", obs_id="g", date="2016-12-15"):
    obs = genotype_obs(value, gene="HLA-B", obs_id=obs_id, date=date)
    obs["code"]["coding"][0]["code"] = kind
    return obs


def cbz_cards(call, *observations):
    body = hook_request(
        "order-sign", [med_order(CARBAMAZEPINE)], prefetch=with_results(*observations)
    )
    return call(body)[1]["cards"]


def test_hla_genotype_with_its_haplotypes_still_alerts(call):
    """The IG's HLA bundle shape: a genotype and the two haplotypes it derives from."""
    found = cbz_cards(
        call,
        hla("HLA-B*15:02:01+HLA-B*07:02:01"),
        hla("HLA-B*15:02:01", "84414-2", "h1"),
        hla("HLA-B*07:02:01", "84414-2", "h2"),
    )
    assert [c["indicator"] for c in found] == ["critical"]


def test_hla_haplotypes_alone(call):
    assert (
        len(
            cbz_cards(
                call, hla("HLA-B*07:02:01", "84414-2", "h1"), hla("HLA-B*15:02:01", "84414-2", "h2")
            )
        )
        == 1
    )
    # one negative copy says nothing about the other copy: unclear, and an unclear result is
    # never quieter than none (the card says the typing does not tell)
    [unclear] = cbz_cards(call, hla("HLA-B*07:02:01", "84414-2", "h1"))
    assert "does not tell whether the patient carries HLA-B\\*15:02" in unclear["detail"]
    # two negative copies: typed negative, no card either
    assert (
        cbz_cards(call, hla("HLA-B*07:02:01", "84414-2", "h1"), hla("HLA-B*44:03", "84414-2", "h2"))
        == []
    )


# -- Medication references ------------------------------------------------------------------


def referencing_order():
    order = med_order(None, order_id="rx-9")
    order["medicationReference"] = {"reference": "Medication/med-1"}
    return order


MEDICATION = {
    "resourceType": "Medication",
    "id": "med-1",
    "code": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "993781"}]
    },
}


def test_medication_sent_beside_the_order(call):
    body = hook_request(
        "order-sign", [referencing_order(), MEDICATION], prefetch=with_results(GOOD)
    )
    assert len(call(body)[1]["cards"]) == 1


@responses.activate
def test_medication_read_from_the_fhir_server(call):
    responses.get(f"{FHIR}/Medication/med-1", json=MEDICATION)
    body = hook_request(
        "order-sign",
        [referencing_order()],
        prefetch=with_results(GOOD),
        fhir_server=FHIR,
        token="t",
    )
    assert len(call(body)[1]["cards"]) == 1


# -- where the token may go -----------------------------------------------------------------


@responses.activate
def test_redirects_are_not_followed(call):
    responses.get(
        re.compile(re.escape(FHIR) + r"/Observation.*"),
        status=302,
        headers={"Location": "https://elsewhere.example.com/steal"},
    )
    status, _ = call(
        hook_request("order-select", [med_order(APAP_CODEINE)], fhir_server=FHIR, token="t")
    )
    assert status == 412
    urls = [c.request.url.split("?")[0] for c in responses.calls]
    results = [c for c in responses.calls if is_results_search(c.request.url)]
    assert len(results) == 1  # the redirect was not followed
    assert all(u.startswith(FHIR) for u in urls)


def test_fhir_server_allow_list(tmp_path):
    from cds_service.settings import Settings
    from cds_service.web.app import create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'f.db'}", fhir_servers=FHIR))
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        fhir_server="https://evil.example.com/fhir",
        token="t",
    )
    response = app.test_client().post("/cds-services/pgx-order-select", json=body)
    assert response.status_code == 403
    assert "PGX_CDS_FHIR_SERVERS" in response.get_json()["error"]


# -- cards ----------------------------------------------------------------------------------


def test_order_without_id_gets_no_replacement_suggestion(call):
    order = med_order(APAP_CODEINE)
    del order["id"]
    body = hook_request("order-sign", [order], prefetch=with_results(GOOD))
    [card] = call(body)[1]["cards"]
    assert card["indicator"] == "critical"
    assert "suggestions" not in card and "selectionBehavior" not in card


def test_request_text_cannot_inject_html_into_the_card(call):
    order = med_order(("308979", "<img src=x onerror=alert(1)>Carbamazepine"))
    typing = genotype_obs("HLA-B*15:02+HLA-B*07:02 <b>x</b>", gene="HLA-B")
    [card] = call(hook_request("order-sign", [order], prefetch=with_results(typing)))[1]["cards"]
    assert card["indicator"] == "critical"
    assert "<img" not in card["detail"] and "<b>" not in card["detail"]
    assert "&lt;img" in card["detail"]


def test_card_has_no_empty_or_null_fields(call):
    body = hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=with_results(GOOD))
    [card] = call(body)[1]["cards"]

    def walk(value):
        assert value not in (None, "", [], {}), card
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(card)


def test_overlong_feedback_is_rejected(client):
    body = {
        "feedback": [
            {"card": "x" * 300, "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}
        ]
    }
    assert client.post("/cds-services/pgx-order-select/feedback", json=body).status_code == 400


@responses.activate
def test_medication_reference_with_display_is_still_read(call):
    responses.get(f"{FHIR}/Medication/med-1", json=MEDICATION)
    order = referencing_order()
    order["medicationReference"]["display"] = "Tylenol #3"
    body = hook_request(
        "order-sign", [order], prefetch=with_results(GOOD), fhir_server=FHIR, token="t"
    )
    assert len(call(body)[1]["cards"]) == 1


@responses.activate
def test_medication_reads_are_cached_and_bounded(call):
    responses.get(f"{FHIR}/Medication/med-1", json=MEDICATION)
    orders = []
    for i in range(20):
        order = referencing_order()
        order["id"] = f"rx-{i}"
        if i % 2:
            order["medicationReference"] = {"reference": f"{FHIR}/Medication/med-1"}  # absolute
        orders.append(order)
    prefetch = {**with_results(GOOD), "patient": None, "activeMedications": None, **NO_CHART}
    prefetch["medicationStatements"] = None
    body = hook_request("order-sign", orders, prefetch=prefetch, fhir_server=FHIR, token="t")
    [card] = call(body)[1]["cards"]  # one card per advice, naming all 20 orders (issue 10)
    assert "Applies to 20 draft orders" in card["detail"]
    assert len(responses.calls) == 1


def test_duplicate_results_count_once(call):
    """A haplotype sent twice (prefetch and a paged search overlapping) is one copy, not two."""
    hap = genotype_obs("*4", obs_id="hap-1")
    hap["code"]["coding"][0]["code"] = "84414-2"
    body = hook_request(
        "order-sign", [med_order(APAP_CODEINE)], prefetch=with_results(hap, copy.deepcopy(hap))
    )
    assert call(body)[1]["cards"] == []


def test_phenotype_text_naming_another_gene_does_not_alert(call):
    obs = phenotype_obs("CYP2C19 Poor Metabolizer", as_text=True)  # gene component: CYP2D6
    body = hook_request("order-sign", [med_order(APAP_CODEINE)], prefetch=with_results(obs))
    assert call(body)[1]["cards"] == []


def test_haplotypes_are_used_when_the_same_day_genotype_is_unreadable(call):
    geno = hla("HLA-B*15")  # one field: cannot tell
    found = cbz_cards(
        call, geno, hla("HLA-B*15:02:01", "84414-2", "h1"), hla("HLA-B*07:02", "84414-2", "h2")
    )
    assert [c["indicator"] for c in found] == ["critical"]
