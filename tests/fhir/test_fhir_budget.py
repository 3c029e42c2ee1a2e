"""Issue 10, items 3 and 5: FHIR reads within one time and size budget, and never outside the
request's fhirServer (no server-side request forgery). A real server on loopback misbehaves."""

from __future__ import annotations

import socket
import time

import hostile_server as hostile
import pytest
import responses
from builders import APAP_CODEINE, HASH_KEY, bundle, hook_request, med_order, phenotype_obs
from hostile_server import closed_port, hostile_server, json_answer
from pydantic import ValidationError

from cds_service.fhir import addresses
from cds_service.fhir.addresses import forbidden_host
from cds_service.fhir.limits import FetchFailed
from cds_service.fhir.reads import bounded_get
from cds_service.fhir.session import GuardedAdapter, guarded_session
from cds_service.settings import Settings
from cds_service.web.app import create_app

PM = phenotype_obs("Poor Metabolizer")
UNREADABLE = "the FHIR server could not be read"


@pytest.fixture
def server():
    with hostile_server() as s:
        yield s


@pytest.fixture
def budget_settings(settings):
    return settings.model_copy(update={"fhir_budget": 1.0, "fhir_timeout": 1.0})


def fetch_call(client, fhir_server, orders=None, **kwargs):
    body = hook_request(
        "order-select",
        orders or [med_order(APAP_CODEINE)],
        fhir_server=fhir_server,
        token="ehr-token",
        **kwargs,
    )
    started = time.perf_counter()
    response = client.post("/cds-services/pgx-order-select", json=body)
    return response.status_code, response.get_json(), time.perf_counter() - started


def client_for(settings):
    return create_app(settings).test_client()


# -- 3. one deadline and a size cap for the FHIR reads of a call ---------------------------


@pytest.mark.parametrize("behaviour", [hostile.drip_body, hostile.drip_headers])
def test_a_dripping_fhir_server_costs_at_most_the_budget(server, budget_settings, behaviour):
    server.routes["/fhir"] = behaviour
    status, answer, took = fetch_call(client_for(budget_settings), f"{server.base}/fhir")
    assert status == 412
    assert answer["missingPrefetch"] == ["genomicResults"]
    assert took < 2.0  # budget 1 s


def test_an_endless_fhir_answer_is_cut_at_the_size_cap(server, budget_settings):
    hostile.SENT["endless"] = 0
    server.routes["/fhir"] = hostile.endless
    # a budget far beyond what reading the capped answers takes, even on a busy machine: the
    # reads must stop at the cap, not run until the budget ends them
    settings = budget_settings.model_copy(update={"fhir_budget": 20.0, "fhir_max_bytes": 2**20})
    status, _, took = fetch_call(client_for(settings), f"{server.base}/fhir")
    assert status == 412
    assert took < 15.0
    # each read stopped after ~1 MB (plus what socket buffers hold); a codeine order sends
    # its reads at once (results, orders, medication list, patient, the label rules' chart
    # reads)
    reads = len(server.requests)
    assert 1 <= reads <= 7
    assert hostile.SENT["endless"] < reads * 6 * 2**20


def test_a_bundle_over_the_size_cap_is_data_unavailable(server, settings):
    padding = {"resourceType": "Basic", "id": "pad", "text": {"div": "x" * (11 * 2**20)}}
    server.routes["/fhir"] = json_answer(bundle(PM, padding))
    status, answer, _ = fetch_call(client_for(settings), f"{server.base}/fhir")
    assert status == 412 and answer["error"].endswith(UNREADABLE)


def test_all_reads_of_a_call_share_one_budget(server, budget_settings):
    """Each read is quick enough alone; together they overrun the 1 s budget."""
    page2 = f"{server.base}/fhir/page2"
    server.routes["/fhir/Observation"] = json_answer(bundle(next_url=page2), delay=0.6)
    server.routes["/fhir/page2"] = json_answer(bundle(PM), delay=0.6)
    status, _, took = fetch_call(client_for(budget_settings), f"{server.base}/fhir")
    assert status == 412
    assert took < 1.5


def test_within_the_budget_the_results_are_read(server, budget_settings):
    server.routes["/fhir/Observation"] = json_answer(bundle(PM))
    status, answer, _ = fetch_call(client_for(budget_settings), f"{server.base}/fhir")
    assert status == 200 and len(answer["cards"]) == 1
    [(path, headers)] = [
        r for r in server.requests if r[0].startswith("/fhir/Observation") and "84413-4" in r[0]
    ]
    assert path.startswith("/fhir/Observation?") and headers["Authorization"] == "Bearer ehr-token"
    # the other reads of the call (the patient, for the age rules) stay under the same base
    assert all(p.startswith("/fhir/") for p, _ in server.requests)


# -- 5. no port scanner: the answer never tells what the remote said ------------------------


@pytest.mark.parametrize("status", [401, 404, 500, 302])
def test_the_412_does_not_echo_the_remote_status(server, settings, status):
    server.routes["/fhir"] = json_answer({"resourceType": "OperationOutcome"}, status=status)
    code, answer, _ = fetch_call(client_for(settings), f"{server.base}/fhir")
    assert code == 412
    assert str(status) not in answer["error"] and answer["error"].endswith(UNREADABLE)


def test_the_412_does_not_echo_connection_errors(settings):
    code, answer, _ = fetch_call(client_for(settings), f"http://127.0.0.1:{closed_port()}/fhir")
    assert code == 412
    assert answer["error"].endswith(UNREADABLE) and "Error" not in answer["error"]


# -- 5. server-side request forgery --------------------------------------------------------


@responses.activate
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://169.254.170.2/v2/credentials",
        "http://[fe80::1]/fhir",
        "http://[::ffff:169.254.169.254]/fhir",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://100.100.100.200/latest/meta-data",
        "http://0.0.0.0:8080/fhir",
        # 169.254.169.254 as the C resolver also reads it: one number, hex, two or three
        # parts, octal parts
        "http://2852039166/",
        "http://0xa9fea9fe/",
        "http://0XA9FEA9FE/latest/meta-data",
        "http://169.254.43518/",
        "http://169.16689662/",
        "http://0251.0376.0251.0376/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://0251.254.169.254./",
        "http://0/fhir",  # 0.0.0.0
    ],
)
def test_metadata_and_link_local_servers_are_refused(client, url):
    status, answer, _ = fetch_call(client, url)
    assert "may query" in answer["error"]
    assert status == 403
    assert len(responses.calls) == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f000001", "127.1", "0177.0.0.1"])
def test_loopback_in_any_form_is_still_served(server, settings, host):
    """Loopback and private addresses are allowed (without an allow-list): the legacy forms
    the forbidden check now reads must not refuse them."""
    server.routes["/fhir"] = json_answer(bundle(PM))
    status, answer, _ = fetch_call(client_for(settings), f"http://{host}:{server.port}/fhir")
    assert status == 200 and len(answer["cards"]) == 1
    assert server.requests


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.10", "172.16.0.5", "127.0.0.1"])
def test_private_addresses_are_not_forbidden(address):
    assert not forbidden_host(address)


def test_a_name_that_resolves_to_a_forbidden_address_is_not_contacted(
    server, settings, monkeypatch
):
    """The guard sits in the connection itself (DNS answers can change): here it is told
    that loopback is forbidden, and the loopback server must see no request."""
    monkeypatch.setattr(addresses, "forbidden_address", lambda a: a.startswith("127."))
    server.routes["/fhir"] = json_answer(bundle(PM))
    status, _, _ = fetch_call(client_for(settings), f"http://localhost:{server.port}/fhir")
    assert status == 412
    assert server.requests == []


def test_the_guard_checks_every_resolved_address(monkeypatch):
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(FetchFailed):
        _read("http://rebind.test/fhir/Observation", budget=1, timeout=1)


def _read(url: str, *, budget: float, timeout: float) -> tuple[int, bytes]:
    return bounded_get(
        guarded_session(),
        url,
        deadline=time.monotonic() + budget,
        max_bytes=1000,
        timeout=timeout,
    )


def referencing(reference: str) -> dict:
    order = med_order(None, order_id="rx-ref")
    order["medicationReference"] = {"reference": reference}
    return order


@pytest.mark.parametrize(
    "reference",
    [
        "Medication/../../../internal/admin?x=1",
        "Medication/..%2F..%2Finternal%2Fadmin",
        "Medication/%2e%2e/%2e%2e/internal",
        "Medication/med-1?_format=x&x=/../../internal",
        "Medication/med-1#/../../internal",
    ],
)
def test_a_reference_cannot_leave_the_fhir_base(server, settings, reference):
    base = f"{server.base}/fhir"
    server.routes["/"] = json_answer(bundle())
    allowed = settings.model_copy(update={"fhir_servers": base})
    fetch_call(client_for(allowed), base, orders=[referencing(reference)])
    assert all(p.startswith("/fhir/") for p in server.paths()), server.paths()
    assert not any("internal" in p or "Medication" in p for p in server.paths())


def test_an_absolute_reference_cannot_leave_the_fhir_base(server, settings):
    base = f"{server.base}/fhir"
    server.routes["/"] = json_answer(bundle())
    fetch_call(client_for(settings), base, orders=[referencing(f"{base}/Medication/../../admin")])
    assert all(p.startswith("/fhir/") for p in server.paths()), server.paths()


def test_a_next_link_cannot_leave_the_fhir_base(server, settings):
    base = f"{server.base}/fhir"
    server.routes["/fhir/Observation"] = json_answer(bundle(PM, next_url=f"{base}/../admin"))
    server.routes["/"] = json_answer(bundle())
    status, _, _ = fetch_call(client_for(settings), base)
    assert status == 412
    assert all(p.startswith("/fhir/") for p in server.paths()), server.paths()


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw@ehr.example.org/fhir",
        "https://ehr.example.org/fhir?x=1",
        "https://ehr.example.org/fhir/../admin",
        "https://ehr.example.org:99999/fhir",
    ],
)
def test_a_fhir_server_that_is_no_base_url_is_a_400(call, url):
    status, answer = call(hook_request("order-select", [med_order(APAP_CODEINE)], fhir_server=url))
    assert status == 400
    assert answer["details"][0]["field"] == "fhirServer"


ISSUER = "https://ehr.example.org"


def test_authentication_without_a_fhir_allowlist_refuses_to_start(settings):
    with pytest.raises(ValidationError, match="PGX_CDS_FHIR_SERVERS"):
        Settings(trusted_issuers={ISSUER: f"{ISSUER}/jwks"}, public_url="https://cds.example.org")
    unsafe = settings.model_copy(
        update={"trusted_issuers": {ISSUER: f"{ISSUER}/jwks"}, "public_url": "https://c.org"}
    )
    with pytest.raises(ValueError, match="PGX_CDS_FHIR_SERVERS"):
        create_app(unsafe)


def test_per_issuer_fhir_servers():
    settings = Settings(
        trusted_issuers={ISSUER: f"{ISSUER}/jwks", "https://b.org": "https://b.org/jwks"},
        public_url="https://cds.example.org",
        issuer_fhir_servers={ISSUER: ["https://ehr.example.org/fhir"]},
        fhir_servers="https://shared.example.org/fhir",
        hash_key=HASH_KEY,
    )
    assert settings.fhir_server_allowed("https://ehr.example.org/fhir/", ISSUER)
    assert not settings.fhir_server_allowed("https://shared.example.org/fhir", ISSUER)
    assert settings.fhir_server_allowed("https://shared.example.org/fhir", "https://b.org")
    assert not settings.fhir_server_allowed("https://ehr.example.org/fhir", "https://b.org")


def test_metering_keeps_the_ssrf_guard():
    """/metrics times FHIR reads by wrapping the session's adapter, never replacing the guard."""
    from cds_service.web import metrics

    session = guarded_session()
    metrics.meter_session(session)
    for prefix in ("http://", "https://"):
        adapter = session.get_adapter(prefix)
        assert isinstance(adapter, GuardedAdapter)
        assert isinstance(adapter, metrics.MeteredAdapter)


def test_the_reads_of_a_call_run_side_by_side(server, settings):
    """Results, active orders, the medication list, the patient and the label rules' chart
    reads (procedures, conditions, breastfeeding status), each 0.4 s slow, cost one round trip
    (the same budget)."""
    from builders import genotype_obs

    from cds_service.web.app import create_app as make

    server.routes["/fhir/Observation"] = json_answer(bundle(genotype_obs("*1/*1")), delay=0.4)
    server.routes["/fhir/MedicationRequest"] = json_answer(bundle(), delay=0.4)
    server.routes["/fhir/MedicationStatement"] = json_answer(bundle(), delay=0.4)
    server.routes["/fhir/Patient"] = json_answer(
        {"resourceType": "Patient", "id": "pat-1", "birthDate": "1970-01-01"}, delay=0.4
    )
    server.routes["/fhir/Procedure"] = json_answer(bundle(), delay=0.4)
    server.routes["/fhir/Condition"] = json_answer(bundle(), delay=0.4)
    client = make(settings.model_copy(update={"fhir_budget": 3.0})).test_client()
    status, answer, took = fetch_call(client, f"{server.base}/fhir")
    assert status == 200 and answer["cards"] == []
    assert {p.split("?")[0] for p, _ in server.requests} == {
        "/fhir/Observation",  # the results, and the breastfeeding status
        "/fhir/MedicationRequest",
        "/fhir/MedicationStatement",
        "/fhir/Patient/pat-1",
        "/fhir/Procedure",
        "/fhir/Condition",
    }
    assert len(server.requests) == 7
    assert took < 1.0  # one round (0.4 s), not seven (2.8 s)


def test_a_resolver_that_does_not_answer_is_bounded_by_the_reads_budget(monkeypatch):
    """The system resolver retries for 5 s and more: the lookup counts against the budget."""
    real = socket.getaddrinfo

    def silent(host, *args, **kwargs):
        if host == "slow-dns.test":
            time.sleep(3)
            return []
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", silent)
    started = time.monotonic()
    with pytest.raises(FetchFailed):
        _read("http://slow-dns.test/fhir/Observation", budget=0.5, timeout=5)
    assert time.monotonic() - started < 1.5


def test_an_address_that_times_out_is_passed_over_for_the_next(monkeypatch, server):
    """A host with an address that drops packets (IPv6 on an IPv4 network) and one that
    answers: the read goes on to the second within the budget."""
    tried: list[str] = []
    real_connect = addresses._connect_one

    def connect_one(address, port, timeout):
        tried.append(address)
        if address == "192.0.2.1":  # TEST-NET-1: nothing answers there
            raise TimeoutError("timed out")
        return real_connect(address, port, timeout)

    server.routes["/fhir/Patient"] = json_answer({"resourceType": "Patient"})

    def two_addresses(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    monkeypatch.setattr(addresses, "_connect_one", connect_one)
    status, _ = _read(f"http://two.test:{server.port}/fhir/Patient/p", budget=2, timeout=1)
    assert status == 200 and tried == ["192.0.2.1", "127.0.0.1"]
