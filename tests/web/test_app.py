"""The HTTP surface: discovery, errors, CORS, health."""

from __future__ import annotations

import io
import json
import sys

import pytest
from builders import APAP_CODEINE, hook_request, med_order, phenotype_obs, with_results

from cds_service.web.app import create_app

SERVICE = "/cds-services/pgx-order-select"


def test_discovery_lists_the_prescribing_hooks_and_patient_view(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.get_json()["services"]
    assert {s["hook"] for s in services} == {
        "order-select",
        "order-sign",
        "medication-prescribe",
        "patient-view",
    }
    for s in services:
        assert s["id"] and s["description"] and s["title"]
        prefetch = s["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        assert prefetch["genomicResults"].startswith(
            "Observation?patient={{context.patientId}}&code="
        )
        assert "http://loinc.org|84413-4" in prefetch["genomicResults"]
        assert prefetch["activeMedications"] == (
            "MedicationRequest?patient={{context.patientId}}&status=active,on-hold"
            "&_include=MedicationRequest:medication"
        )
        assert prefetch["medicationStatements"].startswith(
            "MedicationStatement?patient={{context.patientId}}&status=active,intended,on-hold,"
        )
        # the label rules' chart reads: bounded (newest first, one page of at most _count)
        assert (
            prefetch["recentProcedures"]
            == "Procedure?patient={{context.patientId}}&_sort=-date&_count=50"
        )
        assert prefetch["activeConditions"] == (
            "Condition?patient={{context.patientId}}"
            "&clinical-status=active,recurrence,relapse&_count=100"
        )
        assert prefetch["breastfeedingStatus"] == (
            "Observation?patient={{context.patientId}}"
            "&code=http://loinc.org|63895-7,http://snomed.info/sct|413712001&_sort=-date&_count=10"
        )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"hookInstance": "x", "context": {"patientId": "p"}}', "hook"),
        (b'{"hook": "order-select", "context": {"patientId": "p"}}', "hookInstance"),
        (b'{"hook": "order-select", "hookInstance": "x"}', "context"),
        (b'{"hook": "order-select", "hookInstance": "x", "context": "oops"}', "context"),
        (b'{"hook": "order-select", "hookInstance": "x", "context": {}}', "context.patientId"),
        (
            b'{"hook": "order-select", "hookInstance": "x", "context": {"patientId": 5}}',
            "context.patientId",
        ),
        (
            b'{"hook": "order-sign", "hookInstance": "x", "context": {"patientId": "p"}}',
            "order-select",
        ),
        (
            b'{"hook": "order-select", "hookInstance": "x", "fhirServer": "ftp://x",'
            b' "context": {"patientId": "p"}}',
            "fhirServer",
        ),
        (
            b'{"hook": "order-select", "hookInstance": "x", "fhirServer": "https://x",'
            b' "fhirAuthorization": {"token_type": "Bearer"}, "context": {"patientId": "p"}}',
            "access_token",
        ),
        (
            b'{"hook": "order-select", "hookInstance": "x", "context": {"patientId": "p",'
            b' "draftOrders": 7}}',
            "context.draftOrders",
        ),
        (
            b'{"hook": "order-select", "hookInstance": "x", "context": {"patientId": "p",'
            b' "draftOrders": [1]}}',
            "context.draftOrders",
        ),
        (
            b'{"hook": "order-select", "hookInstance": "x", "context": {"patientId": "p",'
            b' "draftOrders": {"resourceType": "Bundle"}, "selections": [3]}}',
            "context.selections",
        ),
        (
            b'{"hook": "order-select", "hookInstance": "x", "context": {"patientId": "p"},'
            b' "prefetch": []}',
            "prefetch",
        ),
    ],
)
def test_bad_input_is_a_400_that_names_the_problem(client, body, problem):
    response = client.post(SERVICE, data=body, content_type="application/json")
    assert response.status_code == 400
    payload = response.get_json()
    assert problem in str(payload)
    assert "Traceback" not in response.get_data(as_text=True)


def test_unknown_service_is_404_json(client):
    response = client.post("/cds-services/nope", json={})
    assert response.status_code == 404
    assert "unknown service" in response.get_json()["error"]
    assert client.get("/nothing-here").status_code == 404
    assert client.get("/nothing-here").get_json()["error"]


def test_wrong_method_is_405_json(client):
    response = client.get(SERVICE)
    assert response.status_code == 405
    assert response.get_json()["error"]


def test_oversized_body_is_413_json(client):
    response = client.post(
        SERVICE, data=b"{" + b" " * (6 * 1024 * 1024) + b"}", content_type="application/json"
    )
    assert response.status_code == 413
    assert "larger" in response.get_json()["error"]


def test_unexpected_failure_is_a_json_500_without_details(client, app, monkeypatch):
    engine = app.extensions["pgx"].engine

    def boom(*_args, **_kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(engine, "evaluate", boom)
    response = client.post(SERVICE, json=hook_request("order-select", [med_order(APAP_CODEINE)]))
    assert response.status_code == 500
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert response.get_json()["error"]


def test_a_bug_in_reading_a_result_is_a_500_logged_where_and_counted(client, monkeypatch, capsys):
    """A programming error while reading results must never pass for "no result" (no card):
    the call fails, the log says where (no value from the call), and a metric counts it."""
    from cds_service.genomics.result_reading import ResultReader
    from cds_service.web import metrics

    def buggy(self, obs, kind=None):
        raise TypeError(f"cannot read {obs.get('id')} of patient-secret-42")

    monkeypatch.setattr(ResultReader, "interpret", buggy)
    counted = metrics.UNEXPECTED.labels("hook", "TypeError")
    before = counted._value.get()
    capsys.readouterr()
    response = client.post(SERVICE, json=_pm_codeine())
    assert response.status_code == 500
    assert response.get_json()["error"].startswith("internal error")
    logged = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(logged) == 1
    assert "test_app.py:" in logged[0] and "in buggy" in logged[0]
    assert "genomics/genomic_facts.py:" in logged[0] and "in _summarise" in logged[0]
    assert "secret" not in logged[0] and "patient-secret" not in response.get_data(as_text=True)
    assert counted._value.get() == before + 1


def test_a_result_whose_status_is_not_a_string_is_ignored_not_a_failure(client):
    """Found by the fuzzer once errors stopped being swallowed: a list as status."""
    body = _pm_codeine()
    body["prefetch"]["genomicResults"]["entry"][0]["resource"]["status"] = ["final"]
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200 and response.get_json()["cards"] == []


def test_cors_preflight_allows_the_sandbox(client):
    response = client.options(
        SERVICE,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type", "accept"} <= allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def _private_network_preflight(client, origin="https://sandbox.cds-hooks.org"):
    return client.options(
        SERVICE,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Private-Network": "true",
        },
    )


def test_a_private_network_preflight_from_a_named_origin_is_allowed(settings):
    """Chrome asks before a public page (the sandbox) calls a service on the tester's own
    machine or network: without the answer it blocks the call. The origin must be named."""
    named = settings.model_copy(update={"cors_origins": "https://sandbox.cds-hooks.org"})
    response = _private_network_preflight(create_app(named).test_client())
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"
    assert response.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]


def test_the_public_sandbox_may_reach_a_testing_service_out_of_the_box(client):
    """Without client authentication and with no origins set (how testers run it), the public
    sandbox's own origin is approved for Chrome's private-network check: a tester's sandbox
    session reaches the service on their machine with no setting to find."""
    response = _private_network_preflight(client)
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_no_private_network_approval_for_any_origin(client, settings):
    """Issue 26, item 6: with origins "*" (the default without client authentication) a page
    from anywhere may call, but is not approved to reach into a private network; nor is an
    origin that is not named."""
    response = _private_network_preflight(client, "https://attacker.example")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Private-Network" not in response.headers
    named = settings.model_copy(update={"cors_origins": "https://sandbox.cds-hooks.org"})
    other = _private_network_preflight(create_app(named).test_client(), "https://evil.example")
    assert "Access-Control-Allow-Private-Network" not in other.headers
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_compressed_body_is_refused_with_415(client):
    import gzip

    response = client.post(
        SERVICE,
        data=gzip.compress(b"{}"),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 415
    assert "compressed" in response.get_json()["error"]


def test_cors_headers_on_normal_answers(client):
    response = client.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_restricted_origins(tmp_path):
    from cds_service.settings import Settings
    from cds_service.web.app import create_app

    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'f.db'}",
            cors_origins="https://sandbox.cds-hooks.org",
        )
    )
    c = app.test_client()
    ok = c.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    other = c.get("/cds-services", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other.headers
    assert ok.headers["Vary"] == other.headers["Vary"] == "Origin"  # for caches in between


def test_errors_carry_cors_and_the_request_id_once(client):
    for response in (
        client.get("/no-such-endpoint", headers={"X-Request-ID": "rid-404"}),
        client.post(SERVICE, data=b"{not json", headers={"X-Request-ID": "rid-400"}),
    ):
        assert response.status_code in (400, 404)
        assert response.headers.getlist("Access-Control-Allow-Origin") == ["*"]
        assert response.headers.getlist("X-Request-ID") == [f"rid-{response.status_code}"]


def test_the_app_speaks_to_a_wsgi_server_that_passes_two_arguments(app):
    """PEP 3333: ``exc_info`` is optional; a server's start_response may not take it."""
    seen = []

    def start_response(status, headers):  # no exc_info parameter
        seen.append((status, dict(headers)))

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/healthz",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
    }
    assert b"".join(app(environ, start_response)) == b'{"status":"ok"}\n'
    [(status, headers)] = seen
    assert status == "200 OK" and headers["X-Request-ID"]


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["database"] == "ok"


def test_logs_hold_no_patient_data_or_tokens(client, caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="cds_service")
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE, patient="patient-XYZ-123")],
        prefetch=with_results(phenotype_obs("Poor Metabolizer", patient="patient-XYZ-123")),
        patient="patient-XYZ-123",
        fhir_server="https://ehr.example.org/fhir",
        token="tok-SECRET-987",
    )
    response = client.post(
        SERVICE, json=body, headers={"Authorization": "Bearer eyJhbGciOiJFUzM4NCJ9.x.y"}
    )
    assert response.status_code == 200 and response.get_json()["cards"]
    logged = caplog.text
    assert "patient-XYZ-123" not in logged
    assert "tok-SECRET-987" not in logged
    assert "eyJhbGciOiJFUzM4NCJ9" not in logged
    assert "1 card(s)" in logged


def test_the_hook_answer_is_json_whatever_it_carries(app):
    """orjson writes the answer; what it cannot write (an integer past 64 bits copied from the
    request) Flask's serialiser does: never a 500."""
    from flask import jsonify

    with app.app_context():
        for body in ({"cards": [{"summary": "Avoid codeine: ≥ 12 µg"}]}, {"cards": [{"n": 2**70}]}):
            response = jsonify(body)
            assert response.mimetype == "application/json"
            assert json.loads(response.get_data()) == body


def _pm_codeine() -> dict:
    return hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch=with_results(phenotype_obs("Poor Metabolizer")),
    )


def test_the_bookkeeping_is_done_once_the_answer_is_sent(app, capsys):
    """The request's log line and metrics come after the answer (the server closes it once
    sent), not before: the caller does not wait for them."""
    from cds_service.web import metrics

    answered = metrics.REQUESTS.labels("hook", "pgx-order-select", "200")
    before = answered._value.get()
    capsys.readouterr()
    response = app.test_client().post(
        SERVICE, json=_pm_codeine(), headers={"X-Request-ID": "ehr-7"}, buffered=False
    )
    assert response.status_code == 200 and response.get_json()["cards"]
    assert answered._value.get() == before
    assert "-> 200" not in capsys.readouterr().err
    response.close()  # what a server does once the answer is sent
    assert answered._value.get() == before + 1
    line = [x for x in capsys.readouterr().err.splitlines() if "-> 200" in x]
    assert len(line) == 1 and "[ehr-7]" in line[0] and "1 card(s)" in line[0]


def test_a_failure_after_the_answer_is_logged_and_the_answer_stands(client, monkeypatch, capsys):
    from cds_service.web import metrics

    def broken(*args, **kwargs):
        raise RuntimeError("the metrics store is gone")

    monkeypatch.setattr(metrics, "record_cards", broken)
    capsys.readouterr()
    response = client.post(SERVICE, json=_pm_codeine())
    assert response.status_code == 200 and response.get_json()["cards"]
    logged = capsys.readouterr().err
    assert "after the answer: RuntimeError failed" in logged
    assert "-> 200" in logged  # the rest of the bookkeeping still done
