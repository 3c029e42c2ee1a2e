"""The shared outbound session (py): one session serves every caller, so nothing
one call receives may ride along with another's, and nothing on the host may replace the
caller's token."""

from __future__ import annotations

import re

import pytest
import responses
from builders import (
    APAP_CODEINE,
    NO_CHART,
    bundle,
    hook_request,
    is_results_search,
    med_order,
    phenotype_obs,
)

from cds_service.fhir.session import _proxies_for_origin, guarded_session, proxies_for

FHIR = "https://ehr.example.org/fhir"
SEARCH = re.compile(re.escape(FHIR) + r"/Observation\?.*")
UM = phenotype_obs("Ultrarapid Metabolizer")


def fetching(token: str, patient: str = "pat-1") -> dict:
    prefetch = {"patient": None, "activeMedications": None, "medicationStatements": None}
    prefetch.update(NO_CHART)
    return hook_request(
        "order-select",
        [med_order(APAP_CODEINE, patient=patient)],
        prefetch=prefetch,
        fhir_server=FHIR,
        token=token,
        patient=patient,
    )


def observation_reads() -> list[responses.Call]:
    return [c for c in responses.calls if is_results_search(c.request.url)]


@responses.activate
def test_a_cookie_set_for_one_call_is_not_sent_with_the_next(call):
    responses.get(
        SEARCH,
        json=bundle(UM),
        headers={"Set-Cookie": "SESSION=first-users-session; Path=/; Domain=ehr.example.org"},
    )
    assert call(fetching("first-user-token"))[0] == 200
    assert call(fetching("second-user-token", patient="pat-2"))[0] == 200
    _first, second = observation_reads()
    assert "Cookie" not in second.request.headers
    assert second.request.headers["Authorization"] == "Bearer second-user-token"


@responses.activate
def test_a_netrc_file_on_the_host_does_not_replace_the_callers_token(call, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine ehr.example.org login service password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    responses.get(SEARCH, json=bundle(UM))
    status, answer = call(fetching("ehr-token"))
    assert status == 200 and len(answer["cards"]) == 1
    [read] = observation_reads()
    assert read.request.headers["Authorization"] == "Bearer ehr-token"


@pytest.fixture
def fresh_proxies():
    _proxies_for_origin.cache_clear()
    yield
    _proxies_for_origin.cache_clear()


def test_proxies_come_from_the_environment_with_its_exceptions(monkeypatch, fresh_proxies):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.hospital.example:3128")
    monkeypatch.setenv("NO_PROXY", "fhir.internal.example")
    outside = proxies_for("https://ehr.example.org/fhir/Observation?patient=1")
    inside = proxies_for("https://fhir.internal.example/r4/Patient/1")
    assert outside.get("https") == "http://proxy.hospital.example:3128"
    assert "https" not in inside


def test_without_proxy_settings_reads_go_direct(monkeypatch, fresh_proxies):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert proxies_for("https://ehr.example.org/fhir/Patient/1") == {}


def test_the_ca_bundle_named_in_the_environment_is_used(monkeypatch, tmp_path):
    bundle_file = tmp_path / "hospital-ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle_file))
    assert guarded_session().verify == str(bundle_file)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert guarded_session().verify is True


@responses.activate
def test_a_compressed_answer_is_asked_for_and_read(call):
    import gzip
    import json

    responses.get(
        SEARCH,
        body=gzip.compress(json.dumps(bundle(UM)).encode()),
        headers={"Content-Encoding": "gzip"},
        content_type="application/fhir+json",
    )
    status, answer = call(fetching("ehr-token"))
    assert status == 200 and len(answer["cards"]) == 1
    [read] = observation_reads()
    assert "gzip" in read.request.headers["Accept-Encoding"]
