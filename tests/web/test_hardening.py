"""Issue 10 reproducers: hostile input gets a 4xx naming the field, and bounded work."""

from __future__ import annotations

import json
import time

import responses
from builders import APAP_CODEINE, hook_request, med_order, phenotype_obs, with_results

GOOD = phenotype_obs("Poor Metabolizer")
FEEDBACK = "/cds-services/pgx-order-select/feedback"
SERVICE = "/cds-services/pgx-order-select"


def codeine_body(**kwargs):
    kwargs.setdefault("prefetch", with_results(GOOD))
    return hook_request("order-select", [med_order(APAP_CODEINE)], **kwargs)


def post_raw(client, path, raw: bytes):
    response = client.post(path, data=raw, content_type="application/json")
    return response.status_code, response.get_json()


def fields(answer) -> list[str]:
    return [d["field"] for d in answer.get("details", [])]


# -- 1. three inputs that gave 500 ---------------------------------------------------------


def _with_huge_int(body: dict) -> bytes:
    """``body`` as JSON with a 5,000-digit integer literal at context.extra (json.dumps
    itself refuses such an int, as the service's parser did)."""
    body["context"]["extra"] = "__HUGE__"
    return json.dumps(body).encode().replace(b'"__HUGE__"', b"9" * 5000)


def test_a_huge_integer_literal_is_a_400_naming_the_field(client):
    status, answer = post_raw(client, SERVICE, _with_huge_int(codeine_body()))
    assert status == 400
    assert fields(answer) == ["context.extra"]
    assert "4300 digits" in answer["details"][0]["problem"]


def test_a_huge_integer_in_feedback_is_a_400_naming_the_field(client):
    raw = (
        b'{"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": '
        b'"2026-11-28T10:00:00Z", "n": ' + b"1" * 5000 + b"}]}"
    )
    status, answer = post_raw(client, FEEDBACK, raw)
    assert status == 400
    assert fields(answer) == ["feedback[0].n"]


def test_a_coding_system_that_is_not_a_string_is_a_400(call):
    body = codeine_body()
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["medicationCodeableConcept"]["coding"][0]["system"] = []
    status, answer = call(body)
    assert status == 400
    assert "coding.system" in fields(answer)[0]


def test_a_lone_surrogate_in_the_patient_id_is_a_400(client):
    body = codeine_body(prefetch=None)  # a covered drug: the service builds a query with it
    body["fhirServer"] = "https://ehr.example.org/fhir"
    raw = json.dumps(body).replace('"pat-1"', '"\\ud800"').encode()
    status, answer = post_raw(client, SERVICE, raw)
    assert status == 400
    assert fields(answer) == ["context.patientId"]


def test_a_surrogate_pair_is_still_a_character(call):
    status, _ = call(codeine_body(patient="pat-\U0001f600"))
    assert status == 200


def test_a_lone_surrogate_in_feedback_is_a_400(client):
    raw = (
        b'{"feedback": [{"card": "\\udc00", "outcome": "overridden", '
        b'"outcomeTimestamp": "2026-11-28T10:00:00Z"}]}'
    )
    status, answer = post_raw(client, FEEDBACK, raw)
    assert status == 400
    assert fields(answer) == ["feedback[0].card"]


# -- 2. bounded work per request ---------------------------------------------------------


def test_many_orders_of_one_drug_give_one_card_that_lists_them(call):
    orders = [med_order(APAP_CODEINE, order_id=f"rx-{i}") for i in range(30)]
    body = hook_request("order-sign", orders, prefetch=with_results(GOOD))
    status, answer = call(body)
    assert status == 200
    [card] = answer["cards"]
    assert "Applies to 30 draft orders" in card["detail"]
    assert "MedicationRequest/rx-29" in card["detail"]
    # a replacement removes every one of the orders, and adds one
    for suggestion in card.get("suggestions", []):
        deleted = [a["resourceId"] for a in suggestion["actions"] if a["type"] == "delete"]
        assert len(deleted) == 30


def test_the_orders_judged_per_call_are_bounded(client):
    orders = [med_order(APAP_CODEINE, order_id=f"rx-{i}") for i in range(5000)]
    body = hook_request("order-sign", orders, prefetch=with_results(GOOD))
    started = time.perf_counter()
    response = client.post("/cds-services/pgx-order-sign", json=body)
    assert response.status_code == 400
    assert "at most 100" in response.get_json()["error"]
    assert time.perf_counter() - started < 2
    assert len(response.data) < 2000


def test_an_overlong_text_is_refused_quickly(call):
    body = codeine_body()
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["medicationCodeableConcept"] = {"text": "tramadol " * 500_000}  # 4.5 MB
    started = time.perf_counter()
    status, answer = call(body)
    assert time.perf_counter() - started < 1.5
    assert status == 400
    assert fields(answer) == [
        "context.draftOrders.entry[0].resource.medicationCodeableConcept.text"
    ]


def test_a_long_text_within_the_bound_is_read_only_at_its_start(call):
    body = codeine_body()
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["medicationCodeableConcept"] = {"text": "x" * 60_000 + " codeine"}
    status, answer = call(body)
    assert (status, answer["cards"]) == (200, [])  # the drug name is not where names are


@responses.activate
def test_wrong_types_in_fhir_authorization_are_400(call):
    body = codeine_body(fhir_server="https://ehr.example.org/fhir", token="t")
    body["fhirAuthorization"]["access_token"] = ["t"]
    status, answer = call(body)
    assert status == 400 and fields(answer) == ["fhirAuthorization.access_token"]


# -- 3. slow clients (under pgx-cds serve: tests/web/test_gather.py, tests/integration) -------


def test_a_body_the_server_hands_over_in_pieces_is_read_whole(client):
    """A server may give the body a little at a time (a read returns what has arrived): the
    call reads until it has all of ``Content-Length``."""
    import io

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            piece, self.data = self.data[: min(size, 500)], self.data[min(size, 500) :]
            return piece

    raw = json.dumps(codeine_body()).encode()
    assert len(raw) > 1500
    response = client.post(
        SERVICE,
        content_type="application/json",
        environ_overrides={
            "wsgi.input": Trickle(raw),
            "CONTENT_LENGTH": str(len(raw)),
            "wsgi.input_terminated": True,
        },
    )
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["cards"]) == 1


def test_a_body_shorter_than_its_content_length_is_a_400_not_read_as_whole(client):
    """The client closed (or half-closed) before sending all it announced: what arrived is not
    the request, even when it happens to be valid JSON."""
    raw = json.dumps(codeine_body()).encode()
    response = client.post(
        SERVICE,
        data=raw,
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(len(raw) + 1000)},
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "the request body ended before it was complete"
