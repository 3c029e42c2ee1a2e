"""FHIR reads the direct way (``http_guard._direct_get``: http.client connections of our own,
kept alive per origin), against real sockets: ``responses`` replaces requests' transport, so
the unit tests that use it read the other way, and these cover this one."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import socket
import time
from pathlib import Path

import pytest
import responses
from hostile_server import hostile_server, json_answer

from cds_service import http_guard, metrics

PATIENT = {"resourceType": "Patient", "id": "p"}


@pytest.fixture
def server():
    with hostile_server() as s:
        yield s


@pytest.fixture(autouse=True)
def no_idle_connections():
    """Each test starts without connections kept from another test's server."""
    http_guard._IDLE.close_all()
    yield
    http_guard._IDLE.close_all()


def read(url: str, session=None, max_bytes: int = 100_000) -> tuple[int, bytes]:
    return http_guard.bounded_get(
        session or http_guard.guarded_session(),
        url,
        deadline=time.monotonic() + 2,
        max_bytes=max_bytes,
        timeout=2,
        headers={"Accept": "application/fhir+json", "Authorization": "Bearer t"},
    )


def test_reads_of_one_server_share_one_kept_alive_connection(server):
    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    session = http_guard.guarded_session()
    for _ in range(3):
        status, body = read(f"{server.base}/fhir/Patient/p", session)
        assert status == 200 and json.loads(body) == PATIENT
    assert len(set(server.peers)) == 1
    _, headers = server.requests[0]
    assert headers["Authorization"] == "Bearer t" and headers["Accept"] == "application/fhir+json"


@pytest.mark.parametrize("fresh_seconds", [0.0, 60.0], ids=["checked when taken", "resent"])
def test_a_connection_the_server_closed_while_idle_is_not_used_again(
    server, monkeypatch, fresh_seconds
):
    """Found closed when taken, or (taken as fresh, unchecked) sent the read again anew."""
    monkeypatch.setattr(http_guard, "FRESH_SECONDS", fresh_seconds)

    def answer_then_hang_up(handler):
        json_answer(PATIENT)(handler)
        handler.close_connection = True  # no "Connection: close": the client cannot know

    server.routes["/fhir/Patient"] = answer_then_hang_up
    assert read(f"{server.base}/fhir/Patient/p")[0] == 200
    time.sleep(0.05)  # the server has closed its side
    assert read(f"{server.base}/fhir/Patient/p")[0] == 200
    assert len(set(server.peers)) == 2


def test_a_kept_alive_connection_closed_as_the_next_read_is_sent_is_replaced(server):
    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    session = http_guard.guarded_session()
    assert read(f"{server.base}/fhir/Patient/p", session)[0] == 200
    # the connection ends just after it was taken (and checked): the answer never comes
    [conn] = [c for idle in http_guard._IDLE._by_origin.values() for _, c in idle]
    taken = http_guard._IDLE.take
    http_guard._IDLE.take = lambda origin: (conn.sock.shutdown(socket.SHUT_RD), conn)[1]  # type: ignore[method-assign]
    try:
        assert read(f"{server.base}/fhir/Patient/p", session)[0] == 200
    finally:
        http_guard._IDLE.take = taken  # type: ignore[method-assign]


def gzip_answer(raw: bytes, coding: str = "gzip"):
    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/fhir+json")
        handler.send_header("Content-Encoding", coding)
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    return answer


def test_a_compressed_answer_is_asked_for_and_read(server):
    server.routes["/fhir/Patient"] = gzip_answer(gzip.compress(json.dumps(PATIENT).encode()))
    status, body = read(f"{server.base}/fhir/Patient/p")
    assert status == 200 and json.loads(body) == PATIENT
    _, headers = server.requests[0]
    assert headers["Accept-Encoding"] == "gzip"


def test_a_compression_bomb_stops_at_the_size_cap(server):
    bomb = gzip.compress(b" " * 50_000_000)  # 50 MB in about 50 KB
    server.routes["/fhir/Observation"] = gzip_answer(bomb)
    started = time.monotonic()
    with pytest.raises(http_guard.FetchFailed, match="larger than"):
        read(f"{server.base}/fhir/Observation", max_bytes=1_000_000)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "coding, raw",
    [("br", b"\x1b\x00"), ("gzip", gzip.compress(b'{"resourceType": "Patient"}')[:-12])],
    ids=["not asked for", "truncated"],
)
def test_an_answer_that_cannot_be_decoded_is_not_read(server, coding, raw):
    server.routes["/fhir/Patient"] = gzip_answer(raw, coding)
    with pytest.raises(http_guard.FetchFailed):
        read(f"{server.base}/fhir/Patient/p")


def test_other_statuses_are_returned_and_the_next_read_works(server):
    server.routes["/fhir/Patient/gone"] = json_answer({"resourceType": "OperationOutcome"}, 404)
    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    session = http_guard.guarded_session()
    assert read(f"{server.base}/fhir/Patient/gone", session) == (404, b"")
    assert read(f"{server.base}/fhir/Patient/p", session)[0] == 200


def test_the_url_is_sent_encoded_as_requests_would_send_it(server):
    server.routes["/fhir/Observation"] = json_answer({"resourceType": "Bundle"})
    read(f"{server.base}/fhir/Observation?code=http://loinc.org|53040-2,x y")
    [(path, _)] = server.requests
    assert path == "/fhir/Observation?code=http://loinc.org%7C53040-2,x%20y"


def test_direct_reads_are_metered(server):
    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    session = http_guard.guarded_session()
    metrics.meter_session(session)
    before = metrics.FHIR_REQUESTS.labels("ok")._value.get()
    assert read(f"{server.base}/fhir/Patient/p", session)[0] == 200
    assert metrics.FHIR_REQUESTS.labels("ok")._value.get() == before + 1


@responses.activate
def test_a_replaced_requests_transport_sees_every_read():
    """A mock (or an instrumentation) that replaces requests' transport is honoured."""
    responses.get("http://fhir.test/fhir/Patient/p", json=PATIENT)
    assert read("http://fhir.test/fhir/Patient/p")[0] == 200
    assert len(responses.calls) == 1


def test_through_a_proxy_reads_go_requests_way(server, monkeypatch):
    """A proxy in the environment (a hospital's egress) gets the absolute URL, as before."""
    server.routes["http://fhir.example.test/fhir/Patient"] = json_answer(PATIENT)
    monkeypatch.setenv("HTTP_PROXY", server.base)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http_guard._proxies_for_origin.cache_clear()
    try:
        assert read("http://fhir.example.test/fhir/Patient/p")[0] == 200
    finally:
        http_guard._proxies_for_origin.cache_clear()
    assert server.paths() == ["http://fhir.example.test/fhir/Patient/p"]


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA bundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pgx-cds test FHIR server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(certificate):
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with hostile_server(tls=context) as s:
        s.routes["/fhir/Patient"] = json_answer(PATIENT)
        yield s


def test_https_is_read_with_the_certificate_checked_against_the_ca_bundle(tls_server, certificate):
    session = http_guard.guarded_session()
    session.verify = str(certificate[0])  # as REQUESTS_CA_BUNDLE sets it
    for _ in range(2):
        status, body = read(f"{tls_server.base}/fhir/Patient/p", session)
        assert status == 200 and json.loads(body) == PATIENT
    assert len(set(tls_server.peers)) == 1  # kept alive


def test_https_with_a_certificate_no_trusted_ca_signed_is_refused(tls_server):
    with pytest.raises(http_guard.FetchFailed):
        read(f"{tls_server.base}/fhir/Patient/p")  # certifi's bundle, as requests'
    assert tls_server.requests == []


def test_https_to_a_name_the_certificate_does_not_cover_is_refused(tls_server, certificate):
    session = http_guard.guarded_session()
    session.verify = str(certificate[0])
    with pytest.raises(http_guard.FetchFailed):
        read(f"https://127.0.0.2:{tls_server.port}/fhir/Patient/p", session)
    assert tls_server.requests == []
