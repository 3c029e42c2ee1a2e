"""The SMART on FHIR EHR launch of the summary page: launch and iss, PKCE (S256), state, the
code exchanged for the EHR's token, the page read with it; nothing stored, nothing logged;
and the patient-view card's ``type: smart`` link."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from shc_fakes import BASE

from cds_service.settings import Settings
from cds_service.summary import smart
from cds_service.web.app import create_app

PUBLIC = "https://cds.example.org"
AUTHORIZE = "https://auth.ehr.example.org/authorize"
TOKEN_URL = "https://auth.ehr.example.org/token"
EHR_TOKEN = "ehr-access-token-secret"
PATIENT = "pgx-cyp2d6-pm"


@pytest.fixture
def app_client(tmp_path, key_file, fhir):
    fhir.load(PATIENT)
    fhir.smart_config = {
        "authorization_endpoint": AUTHORIZE,
        "token_endpoint": TOKEN_URL,
        "code_challenge_methods_supported": ["S256"],
    }
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'svc.sqlite3'}",
        shc_key=key_file,
        public_url=PUBLIC,
        smart_client_id="pgx-card-app",
    )
    with create_app(settings).test_client() as client:
        yield client


def _launch(client):
    answer = client.get("/smart/launch", query_string={"iss": BASE, "launch": "xyz123"})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == AUTHORIZE
    return {k: v[0] for k, v in parse_qs(target.query).items()}, answer


def test_launch_sends_the_browser_to_the_ehr_with_pkce(app_client):
    query, answer = _launch(app_client)
    assert query["response_type"] == "code" and query["client_id"] == "pgx-card-app"
    assert query["launch"] == "xyz123" and query["aud"] == BASE
    assert query["redirect_uri"] == f"{PUBLIC}/smart/callback"
    assert query["code_challenge_method"] == "S256" and query["state"]
    assert "patient/Observation.read" in query["scope"] and "launch" in query["scope"]
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    # the verifier is in the (authenticated) cookie, only its S256 challenge goes to the EHR
    assert query["code_challenge"] not in cookie


@pytest.mark.parametrize(
    ("capabilities", "suffix"),
    [
        (None, "read"),
        (["launch-ehr", "permission-v1", "permission-v2"], "read"),
        (["launch-ehr", "permission-v2"], "rs"),
    ],
)
def test_scopes_are_v2_only_for_an_ehr_that_grants_v2_only(app_client, fhir, capabilities, suffix):
    """Read access to all the page reads: SMART v1 scopes, or v2's where the EHR's
    configuration lists permission-v2 and not permission-v1 (an EHR that knows v1 only would
    not grant ``.rs``)."""
    if capabilities is not None:
        fhir.smart_config = {**fhir.smart_config, "capabilities": capabilities}
    query, _ = _launch(app_client)
    asked = query["scope"].split()
    assert asked[:3] == ["launch", "openid", "fhirUser"]
    reads = {"Patient", "Observation", "MedicationRequest", "MedicationStatement"}
    reads |= {"Condition", "Procedure"}
    assert set(asked[3:]) == {f"patient/{kind}.{suffix}" for kind in reads}


def test_callback_exchanges_the_code_and_serves_the_page(app_client, fhir, caplog):
    query, _ = _launch(app_client)
    exchanged = {}

    def token(request):
        form = parse_qs(request.body)
        exchanged.update({k: v[0] for k, v in form.items()})
        body = {"access_token": EHR_TOKEN, "token_type": "Bearer", "patient": PATIENT}
        return 200, {}, json.dumps(body)

    fhir.mock.add_callback(responses.POST, TOKEN_URL, callback=token)
    caplog.set_level(logging.DEBUG)
    page = app_client.get(
        "/smart/callback", query_string={"code": "the-code", "state": query["state"]}
    )
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    assert "Paul Poor Testpatient" in html and "CYP2D6" in html
    assert "<svg" in html and page.headers["Cache-Control"] == "no-store"
    # PKCE: the verifier sent with the code is the one whose S256 the EHR was given
    digest = hashlib.sha256(exchanged["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"]
    assert exchanged["grant_type"] == "authorization_code" and exchanged["code"] == "the-code"
    # the EHR's token read the record; nothing of it (or the patient) in the logs
    assert f"Bearer {EHR_TOKEN}" in fhir.tokens
    logged = caplog.text
    assert EHR_TOKEN not in logged and "the-code" not in logged and PATIENT not in logged


def test_callback_without_the_launch_s_cookie_or_with_another_state_is_refused(app_client, fhir):
    query, _ = _launch(app_client)
    wrong = app_client.get("/smart/callback", query_string={"code": "c", "state": "other"})
    assert wrong.status_code == 400 and "state does not match" in wrong.get_json()["error"]
    app_client.delete_cookie(smart.COOKIE, path="/smart/")
    none = app_client.get("/smart/callback", query_string={"code": "c", "state": query["state"]})
    assert none.status_code == 400 and "no launch in progress" in none.get_json()["error"]


def test_a_forged_cookie_is_refused():
    pending = smart.Pending("s", "v", BASE, TOKEN_URL, 2_000_000_000)
    sealed = smart.seal(pending, b"k" * 32)
    assert smart.unseal(sealed, b"k" * 32, now=0) == pending
    with pytest.raises(smart.LaunchError, match="not this service's"):
        smart.unseal(sealed, b"x" * 32, now=0)
    with pytest.raises(smart.LaunchError, match="too long"):
        smart.unseal(sealed, b"k" * 32, now=3_000_000_000)


def test_launch_from_a_server_the_service_may_not_read_is_refused(app_client):
    metadata = app_client.get(
        "/smart/launch", query_string={"iss": "https://169.254.169.254/fhir", "launch": "x"}
    )
    assert metadata.status_code == 403
    plain = app_client.get(
        "/smart/launch", query_string={"iss": "http://ehr.example.org/fhir", "launch": "x"}
    )
    assert plain.status_code == 400 and "https" in plain.get_json()["error"]
    missing = app_client.get("/smart/launch", query_string={"iss": BASE})
    assert missing.status_code == 400


def test_patient_view_card_links_to_the_app(app_client, fhir):
    request = {
        "hook": "patient-view",
        "hookInstance": "1b1e5d2a-0000-4000-8000-000000000001",
        "fhirServer": BASE,
        "fhirAuthorization": {
            "access_token": "t",
            "token_type": "Bearer",
            "scope": "x",
            "subject": "app",
        },
        "context": {"patientId": PATIENT, "userId": "Practitioner/1"},
    }
    answer = app_client.post("/cds-services/pgx-patient-view", json=request)
    (card,) = answer.get_json()["cards"]
    assert {
        "label": "Patient's PGx card (printable, with a SMART Health Card)",
        "url": f"{PUBLIC}/smart/launch",
        "type": "smart",
    } in card["links"]


def test_without_a_client_id_there_is_no_app_and_no_link(tmp_path, key_file):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 's.sqlite3'}", shc_key=key_file)
    client = create_app(settings).test_client()
    assert client.get("/smart/launch", query_string={"iss": BASE, "launch": "x"}).status_code == 404
