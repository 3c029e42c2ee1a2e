"""Issue 10, item 7: logs at DEBUG hold no patient identifiers or free text, and no value
from a caller can forge a log line."""

from __future__ import annotations

import logging
import re
import sys

import pytest
import responses
from builders import APAP_CODEINE, bundle, hook_request, med_order, phenotype_obs, with_results
from hostile_server import hostile_server, json_answer

from cds_service.core.logsafe import clean, patient_ref
from cds_service.web.app import create_app

PATIENT = "patient-4711-secret"
NAME = "Jane Q. Doe"


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG)  # the root logger: what an operator's DEBUG setting does
    caplog.set_level(logging.DEBUG, logger="cds_service")  # and PGX_CDS_LOG_LEVEL=DEBUG
    return caplog


def all_text(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_debug_logs_of_a_fhir_read_hold_no_patient_id(settings, debug_logs):
    with hostile_server() as server:
        server.routes["/fhir"] = json_answer(
            bundle(phenotype_obs("Poor Metabolizer", patient=PATIENT))
        )
        client = create_app(settings).test_client()
        body = hook_request(
            "order-select",
            [med_order(APAP_CODEINE, patient=PATIENT)],
            fhir_server=f"{server.base}/fhir",
            token="ehr-token",
            patient=PATIENT,
        )
        response = client.post("/cds-services/pgx-order-select", json=body)
        assert server.requests, "the service read the FHIR server"
    assert response.status_code == 200 and response.get_json()["cards"]
    logged = all_text(debug_logs)
    assert PATIENT not in logged
    assert "ehr-token" not in logged
    assert patient_ref(PATIENT) in logged  # an opaque id still correlates the lines


def test_free_medication_text_is_not_logged(client, debug_logs):
    order = med_order(None)
    order["medicationCodeableConcept"] = {"text": f"codeine 30 mg for {NAME}"}
    body = hook_request(
        "order-select", [order], prefetch=with_results(phenotype_obs("Poor Metabolizer"))
    )
    response = client.post("/cds-services/pgx-order-select", json=body)
    assert response.status_code == 200 and response.get_json()["cards"]
    assert any(r.getMessage().startswith("trace medications") for r in debug_logs.records)
    assert NAME not in all_text(debug_logs)


@pytest.mark.parametrize(
    "path",
    [
        "/cds-services%0AINFO%20forged%20line",
        "/x%0D%0AINFO forged",
        "/cds-services/pgx%E2%80%A8forged",
    ],
)
def test_a_path_cannot_forge_a_log_line(client, debug_logs, path):
    client.get(path)
    client.post(path, json={})
    for record in debug_logs.records:
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message and "\u2028" not in message


def test_a_hook_name_cannot_forge_a_log_line(client, debug_logs):
    body = hook_request("order-select", [med_order(APAP_CODEINE)])
    body["hook"] = "x\nCRITICAL forged " + "y" * 5000
    response = client.post("/cds-services/pgx-order-select", json=body)
    assert response.status_code == 400
    for record in debug_logs.records:
        assert "\n" not in record.getMessage() and len(record.getMessage()) < 1000


# A client JWT (header, claims, signature; what an EHR sends as ``Authorization: Bearer``).
CLIENT_JWT = (
    "eyJhbGciOiJSUzM4NCIsInR5cCI6IkpXVCJ9"
    ".eyJpc3MiOiJodHRwczovL2Voci5leGFtcGxlLm9yZyIsInN1YiI6InBhdGllbnQtNDcxMSJ9"
    ".c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)


@pytest.mark.parametrize(
    "header",
    [
        CLIENT_JWT,
        "eyJhbGciOiJub25lIn0.e30.",  # a JWT short enough to pass a length limit
        "r" * 65,
        "patient/MRN-4455667",
        "MRN=4455667+x",
    ],
)
def test_a_token_or_long_value_sent_as_request_id_is_replaced_and_never_logged(
    client, capsys, header
):
    capsys.readouterr()
    answer = client.post(
        "/cds-services/pgx-order-select", json={}, headers={"X-Request-ID": header}
    )
    assert answer.status_code == 400
    fresh = answer.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    logged = capsys.readouterr().err
    assert f"[{fresh}]" in logged  # the log lines of the request carry the new id
    assert header not in logged


@pytest.mark.parametrize("header", ["ehr-42", "6f1c2a9e-3b7d-4e0a-9c1f-2d8e5b7a4c30", "a.b:c_d"])
def test_a_short_plain_request_id_is_kept_and_logged(client, capsys, header):
    capsys.readouterr()
    answer = client.get("/cds-services", headers={"X-Request-ID": header})
    assert answer.headers["X-Request-ID"] == header
    assert f"[{header}]" in capsys.readouterr().err


# -- no text the caller chose reaches a log line (the answer may name it) -------------------

MRN = "patient-MRN-4455667"


def assert_not_logged(caplog, *values: str) -> None:
    logged = all_text(caplog)
    for value in values:
        assert value not in logged


def codeine_request(**kwargs) -> dict:
    kwargs.setdefault("prefetch", with_results(phenotype_obs("Poor Metabolizer")))
    return hook_request("order-select", [med_order(APAP_CODEINE)], **kwargs)


@pytest.mark.parametrize("name", [CLIENT_JWT, MRN])
@pytest.mark.parametrize("suffix", ["", "/feedback"])
def test_an_unknown_service_name_is_answered_but_not_logged(client, debug_logs, name, suffix):
    answer = client.post(f"/cds-services/{name}{suffix}", json=codeine_request())
    assert answer.status_code == 404
    assert name in answer.get_json()["error"]  # the caller is told what was wrong
    assert any("unknown service" in r.getMessage() for r in debug_logs.records)
    assert_not_logged(debug_logs, name)


@pytest.mark.parametrize("hook", [CLIENT_JWT, MRN])
def test_a_hook_value_is_answered_but_not_logged(client, debug_logs, hook):
    body = codeine_request()
    body["hook"] = hook
    answer = client.post("/cds-services/pgx-order-select", json=body)
    assert answer.status_code == 400
    assert hook in answer.get_json()["error"]
    assert any("order-select" in r.getMessage() for r in debug_logs.records)
    assert_not_logged(debug_logs, hook)


def test_an_unknown_path_or_method_is_not_logged(client, debug_logs):
    assert client.get(f"/{MRN}/x").status_code == 404
    assert client.get(f"/{CLIENT_JWT}").status_code == 404
    assert client.open("/cds-services", method="MRN4455667").status_code == 405
    assert "-> 404" in all_text(debug_logs) and "-> 405" in all_text(debug_logs)
    assert_not_logged(debug_logs, MRN, CLIENT_JWT, "MRN4455667")


def test_a_refused_fhir_server_host_is_not_logged(settings, debug_logs):
    allowed = settings.model_copy(update={"fhir_servers": "https://ehr.example.org/fhir"})
    client = create_app(allowed).test_client()
    host = f"{MRN.lower()}.example.org"
    body = codeine_request(prefetch=None, fhir_server=f"https://{host}/fhir", token="t")
    answer = client.post("/cds-services/pgx-order-select", json=body)
    assert answer.status_code == 403
    assert "not on the allow-list" in all_text(debug_logs)
    assert_not_logged(debug_logs, host)


def _unsigned_jwt(header: dict) -> str:
    import base64
    import json

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part(header)}.{part({'iss': 'https://ehr.example.org'})}.c2ln"


@responses.activate
def test_the_algorithm_of_a_client_jwt_is_answered_but_not_logged(settings, debug_logs):
    from jwt_clients import JKU, make_client, rsa_jwks

    responses.get(JKU, json=rsa_jwks())
    forged = _unsigned_jwt({"alg": MRN, "kid": "rsa"})
    answer = make_client(settings).post(
        "/cds-services/pgx-order-select", json={}, headers={"Authorization": f"Bearer {forged}"}
    )
    assert answer.status_code == 401 and MRN[:20] in answer.get_json()["error"]
    assert "client error 401" in all_text(debug_logs)
    assert_not_logged(debug_logs, MRN[:20])


def test_clean_escapes_and_caps():
    assert clean("a\nb\rc\x1b[31m\u2028") == "a\\nb\\rc\\x1b[31m\\u2028"
    assert len(clean("x" * 10_000)) <= 201
    assert clean("\ud800") == "\\ud800"


def test_the_patient_reference_is_keyed_and_alike_at_every_replica(settings):
    """An unkeyed hash of a patient id can be looked up by hashing every id; the reference
    is keyed from the service's key in the database, which replicas share."""
    import hashlib

    from cds_service.web.app import create_app

    create_app(settings)
    first = patient_ref(PATIENT)
    create_app(settings)  # another replica on the same database
    assert patient_ref(PATIENT) == first
    assert first != f"patient#{hashlib.sha256(PATIENT.encode()).hexdigest()[:12]}"
    assert patient_ref("another-patient") != first


def test_a_new_service_key_changes_the_patient_reference_at_once(monkeypatch):
    """References are remembered per patient id: a new key must not leave old ones in use."""
    from cds_service.core import logsafe

    monkeypatch.setattr(logsafe, "_ref_key", logsafe._ref_key)  # restored afterwards
    long_id = "x" * 65  # longer than any FHIR id: computed each time, not remembered
    logsafe.set_ref_key(b"key one")
    first, first_long = patient_ref(PATIENT), patient_ref(long_id)
    logsafe.set_ref_key(b"key two")
    assert patient_ref(PATIENT) != first and patient_ref(long_id) != first_long
    logsafe.set_ref_key(b"key one")
    assert patient_ref(PATIENT) == first and patient_ref(long_id) == first_long
    remembered = logsafe._ref.cache_info().currsize
    for n in range(10):  # long ids (up to 64K characters in a body) take no memory
        patient_ref(f"{n}" + "y" * 70)
    assert logsafe._ref.cache_info().currsize == remembered


@pytest.mark.parametrize("created", [1700000000.0004, 1700000000.9996, 1700000001.5, 86399.25])
def test_text_log_lines_are_stamped_as_logging_stamps_them(created):
    """The text format's date and time are made once a second: every line still carries its
    own second and milliseconds, exactly as the standard formatter writes them."""
    from cds_service.web.logs import TEXT_FORMAT, _TextFormatter

    ours, standard = _TextFormatter(TEXT_FORMAT), logging.Formatter(TEXT_FORMAT)
    for moment in (created, created + 0.001, created + 1.0, created):
        record = logging.LogRecord("cds_service", logging.INFO, "", 0, "m", (), None)
        record.created, record.msecs = moment, int((moment - int(moment)) * 1000)
        assert ours.formatTime(record) == standard.formatTime(record)


@pytest.mark.parametrize("kind", ["as python makes stderr", "buffered, write-through", "buffered"])
def test_each_log_line_reaches_stderr_at_once(monkeypatch, tmp_path, kind):
    """A line is in the file when the call returns: on Python's own stderr (unbuffered,
    writing through: no flush needed) and on any stream put in its place (flushed)."""
    import io

    from cds_service.web.logs import configure_logging

    path = tmp_path / "stderr"
    raw = io.FileIO(path, "w")
    if kind == "as python makes stderr":
        stream = io.TextIOWrapper(raw, write_through=True)
    else:
        buffered = io.BufferedWriter(raw, 1 << 16)
        stream = io.TextIOWrapper(buffered, write_through=kind.endswith("write-through"))
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("INFO")
    logging.getLogger("cds_service").info("one line")
    assert path.read_bytes().endswith(b"one line\n")


def test_urllib3_warnings_that_name_the_callers_host_are_not_logged(caplog):
    """'Connection pool is full, discarding connection: <host>': the host is the caller's."""
    import logging

    from cds_service.core.logsafe import quiet_http_libraries

    quiet_http_libraries()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("urllib3.connectionpool").warning(
            "Connection pool is full, discarding connection: %s", "patient-mrn-4455667.example"
        )
    assert "patient-mrn-4455667" not in caplog.text


# -- issue 26, item 13: what DEBUG adds, and nothing more -----------------------------------


def test_debug_logs_hold_no_record_ids_only_the_decision(client, debug_logs):
    """The trace is logged without the EHR's record ids (``explain`` shows them); what it
    keeps is the decision (the genomic result as read), which docs/security.md says."""
    result = phenotype_obs("Poor Metabolizer")
    result["id"] = "obs-record-778899"
    order = med_order(APAP_CODEINE)
    order["id"] = "order-record-445566"
    body = hook_request("order-select", [order], prefetch=with_results(result))
    body["context"]["selections"] = ["MedicationRequest/order-record-445566"]
    response = client.post("/cds-services/pgx-order-select", json=body)
    assert response.status_code == 200 and response.get_json()["cards"]
    traced = [r.getMessage() for r in debug_logs.records if r.getMessage().startswith("trace")]
    assert any("Observation/…" in line and "Poor Metabolizer" in line for line in traced)
    assert_not_logged(debug_logs, "obs-record-778899", "order-record-445566")


def test_debug_level_warns_at_start_that_it_is_not_for_production(settings, caplog):
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        create_app(settings.model_copy(update={"log_level": "DEBUG"}))
    warned = [r.getMessage() for r in caplog.records if "not for production" in r.getMessage()]
    assert warned and "genomic results" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        create_app(settings)
    assert not any("not for production" in r.getMessage() for r in caplog.records)
