"""Genomic results an EHR sends again and again (every order-select of a session, then
order-sign) are recognised by their bytes, not read again (``core.known_json``): the answer,
the decision trace and every safety rule stay what a full reading gives."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import responses
from builders import APAP_CODEINE, TRAMADOL, bundle, hook_request, med_order, phenotype_obs

from cds_service.core.trace import Trace
from cds_service.web.app import create_app
from cds_service.web.wiring import services

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bodies import NORMAL, ULTRARAPID, prefetch_body, realistic_results

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FHIR = "https://ehr.example.org/fhir"
ORDER_SELECT = "/cds-services/pgx-order-select"


@pytest.fixture
def traces(monkeypatch):
    """The decision trace of each call, as ``pgx-cds explain`` and the DEBUG log show it."""
    seen: list[list[tuple[str, str]]] = []
    log = Trace.log

    def keep(self, logger, request_id=None):
        seen.append(list(self.lines))
        log(self, logger, request_id)

    monkeypatch.setattr(Trace, "log", keep)
    return seen


def post(client, body: dict) -> bytes:
    response = client.post(ORDER_SELECT, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.data[:300]
    return UUID.sub(b"<uuid>", response.data)


def test_the_same_results_sent_again_give_the_same_answer_and_trace(app, client, traces):
    body = prefetch_body(cyp2d6=ULTRARAPID)
    answers = [post(client, body) for _ in range(4)]
    assert services(app).known_results.values == 1  # (from the third call: left unread)
    assert len(set(answers)) == 1
    assert b'"indicator":"critical"' in answers[0]
    assert all(t == traces[0] for t in traces[1:])
    assert ("prefetch", "genomicResults: 31 resources prefetched") in traces[0]


def test_known_results_give_each_order_its_own_card(app, client):
    """The next order-select of the session: the same results, another drug; a service that
    never saw the results answers the same."""
    for _ in range(3):
        post(client, prefetch_body(cyp2d6=ULTRARAPID))
    prefetch = prefetch_body(cyp2d6=ULTRARAPID)["prefetch"]
    tramadol = hook_request("order-select", [med_order(TRAMADOL)], prefetch=prefetch)
    seen = post(client, tramadol)
    assert services(app).known_results.values == 1
    fresh = create_app(services(app).settings).test_client()
    assert seen == post(fresh, tramadol)
    assert b"tramadol" in seen.lower() and b'"indicator":"critical"' in seen


def test_results_known_for_one_patient_are_not_taken_as_anothers(app, client):
    """The same bytes sent for another patient: results about someone else are ignored."""
    for _ in range(3):
        assert b"critical" in post(client, prefetch_body(cyp2d6=ULTRARAPID))
    other = prefetch_body(cyp2d6=ULTRARAPID)
    other["context"]["patientId"] = "someone-else"
    other["prefetch"]["patient"]["id"] = "someone-else"
    assert b"critical" not in post(client, other)


def test_changed_results_are_read_again(app, client):
    """The lab's new result arrives between two orders: the new bytes decide."""
    for _ in range(3):
        assert b"critical" in post(client, prefetch_body(cyp2d6=ULTRARAPID))
    assert json.loads(post(client, prefetch_body(cyp2d6=NORMAL)))["cards"] == []


@responses.activate
def test_results_with_a_further_page_read_it_on_every_call(app, client):
    """A prefetch whose Bundle has a next page: that page comes from the FHIR server each
    time (it can change), even when the first page's bytes are known."""
    page2 = f"{FHIR}/Observation?page=2"
    responses.get(
        re.compile(re.escape(FHIR) + r"/Observation\?.*"),
        match=[responses.matchers.query_param_matcher({"page": "2"})],
        json=bundle(phenotype_obs("Ultrarapid Metabolizer")),
    )
    first_page = realistic_results(cyp2d6=NORMAL)
    first_page["link"] = [{"relation": "next", "url": page2}]
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch={"genomicResults": first_page},
        fhir_server=FHIR,
        token="t",
    )
    answers = [post(client, body) for _ in range(4)]
    assert services(app).known_results.values == 1
    pages = [c for c in responses.calls if c.request.url == page2]
    assert len(pages) == 4
    assert len(set(answers)) == 1 and b'"indicator":"critical"' in answers[0]
