"""FHIR reads the direct way (``direct.DirectGet``: http.client connections of our own,
kept alive per origin), against real sockets: ``responses`` replaces requests' transport, so
the unit tests that use it read the other way, and these cover this one."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import gzip
import ipaddress
import json
import threading
import time
from pathlib import Path

import hostile_server as hostile
import pytest
import responses
from hostile_server import hostile_server, json_answer

from cds_service.core.trace import Trace
from cds_service.fhir import addresses, direct
from cds_service.fhir.limits import FetchFailed
from cds_service.fhir.reads import bounded_get
from cds_service.fhir.session import GuardedAdapter, _proxies_for_origin, guarded_session
from cds_service.web import metrics

PATIENT = {"resourceType": "Patient", "id": "p"}


@pytest.fixture
def server():
    with hostile_server() as s:
        yield s


@pytest.fixture(autouse=True)
def no_idle_connections():
    """Each test starts without connections kept from another test's server."""
    direct._IDLE.close_all()
    yield
    direct._IDLE.close_all()


def read(url: str, session=None, max_bytes: int = 100_000) -> tuple[int, bytes]:
    return bounded_get(
        session or guarded_session(),
        url,
        deadline=time.monotonic() + 2,
        max_bytes=max_bytes,
        timeout=2,
        headers={"Accept": "application/fhir+json", "Authorization": "Bearer t"},
    )


def test_reads_of_one_server_share_one_kept_alive_connection(server):
    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    session = guarded_session()
    for _ in range(3):
        status, body = read(f"{server.base}/fhir/Patient/p", session)
        assert status == 200 and json.loads(body) == PATIENT
    assert len(set(server.peers)) == 1
    _, headers = server.requests[0]
    assert headers["Authorization"] == "Bearer t" and headers["Accept"] == "application/fhir+json"


def test_a_connection_the_server_closed_while_idle_is_not_used_again(server):
    def answer_then_hang_up(handler):
        json_answer(PATIENT)(handler)
        handler.close_connection = True  # no "Connection: close": the client cannot know

    server.routes["/fhir/Patient"] = answer_then_hang_up
    assert read(f"{server.base}/fhir/Patient/p")[0] == 200
    time.sleep(0.05)  # the server has closed its side
    assert read(f"{server.base}/fhir/Patient/p")[0] == 200
    assert len(set(server.peers)) == 2


def answers_in_turn(*behaviours):
    """A route that behaves as the first behaviour for the first request, and so on."""
    count = {"n": 0}

    def route(handler):
        count["n"] += 1
        behaviours[min(count["n"], len(behaviours)) - 1](handler)

    return route


def hang_up(handler):
    handler.close_connection = True  # closed without an answer


def test_a_kept_alive_connection_the_server_closes_as_the_read_is_sent_is_replaced(server):
    server.routes["/fhir/Patient"] = answers_in_turn(
        json_answer(PATIENT), hang_up, json_answer(PATIENT)
    )
    session = guarded_session()
    assert read(f"{server.base}/fhir/Patient/p", session)[0] == 200
    status, body = read(f"{server.base}/fhir/Patient/p", session)
    assert status == 200 and json.loads(body) == PATIENT
    assert len(server.peers) == 3 and len(set(server.peers)) == 2  # sent again, anew


def test_a_kept_alive_connection_cut_at_the_deadline_is_not_read_again(server):
    """The watchdog cuts the stalled read; that is not the server's keep-alive close, so the
    read is not sent again on a new connection (which no deadline would watch)."""
    server.routes["/fhir/Patient"] = answers_in_turn(
        json_answer(PATIENT), json_answer(PATIENT, delay=3), hostile.drip_headers
    )
    session = guarded_session()
    assert read(f"{server.base}/fhir/Patient/p", session)[0] == 200
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="deadline"):
        bounded_get(
            session,
            f"{server.base}/fhir/Patient/p",
            deadline=started + 0.5,
            max_bytes=1000,
            timeout=2,
        )
    assert time.monotonic() - started < 1.0
    assert len(server.peers) == 2


def test_a_deadline_that_passes_while_connecting_ends_the_read(server, monkeypatch):
    server.routes["/fhir/Patient"] = hostile.drip_headers
    real_connect = addresses._connect_one

    def slow_connect(address, port, timeout):
        time.sleep(0.7)  # the connection is made after the deadline
        return real_connect(address, port, timeout)

    monkeypatch.setattr(addresses, "_connect_one", slow_connect)
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="deadline"):
        bounded_get(
            guarded_session(),
            f"{server.base}/fhir/Patient/p",
            deadline=started + 0.5,
            max_bytes=1000,
            timeout=2,
        )
    assert time.monotonic() - started < 1.2
    assert server.requests == []  # nothing sent past the deadline


def test_bytes_after_an_answer_never_become_the_next_reads_answer(server):
    other = json.dumps({"resourceType": "Patient", "id": "someone-else"}).encode()

    def answer_and_more(handler):
        json_answer({"resourceType": "Patient", "id": "A"})(handler)
        handler.wfile.flush()
        time.sleep(0.02)  # after the client has read the answer
        handler.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(other), other)
        )
        handler.wfile.flush()

    server.routes["/fhir/Patient/A"] = answer_and_more
    server.routes["/fhir/Patient/B"] = json_answer({"resourceType": "Patient", "id": "B"})
    session = guarded_session()
    read(f"{server.base}/fhir/Patient/A", session)
    time.sleep(0.05)
    status, body = read(f"{server.base}/fhir/Patient/B", session)
    assert status == 200 and json.loads(body)["id"] == "B"


def test_a_connection_kept_for_the_next_read_is_no_longer_watched_by_this_one(server, monkeypatch):
    """Read A keeps its connection, then its deadline passes before it is done: the watchdog
    must not cut the connection read B has taken meanwhile (B would get half a body)."""
    body = json.dumps({"resourceType": "Bundle", "pad": "x" * 200_000}).encode()

    def slow_big(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for i in range(0, len(body), 2_000):  # about 2 s in all: A's deadline passes meanwhile
            handler.wfile.write(body[i : i + 2_000])
            handler.wfile.flush()
            time.sleep(0.02)

    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    server.routes["/fhir/Bundle"] = slow_big
    session = guarded_session()
    give = direct._IDLE.give
    kept = threading.Event()

    def give_then_pause(origin, conn):
        give(origin, conn)
        if threading.current_thread().name == "A":
            kept.set()
            time.sleep(1.5)  # A is held up between keeping the connection and finishing

    monkeypatch.setattr(direct._IDLE, "give", give_then_pause)

    def read_a():
        bounded_get(
            session,
            f"{server.base}/fhir/Patient/p",
            deadline=time.monotonic() + 1.0,  # passes while A is held up, B reading
            max_bytes=1000,
            timeout=1,
        )

    a = threading.Thread(target=read_a, name="A")
    a.start()
    assert kept.wait(5)  # (B starts once A has kept its connection, however slow the machine)
    status, got = bounded_get(
        session,
        f"{server.base}/fhir/Bundle",
        deadline=time.monotonic() + 10,
        max_bytes=1_000_000,
        timeout=5,
    )
    a.join()
    assert len(set(server.peers)) == 1  # B took A's connection
    assert status == 200 and got == body


def test_an_answer_cut_short_is_not_read_as_whole(server):
    def short(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        handler.wfile.write(b'{"resourceType": "Patient"}')
        handler.close_connection = True

    server.routes["/fhir/Patient"] = short
    with pytest.raises(FetchFailed, match="IncompleteRead"):
        read(f"{server.base}/fhir/Patient/p")


def test_idle_connections_are_kept_for_few_servers_only():
    """A caller naming many FHIR servers (no allow-list) cannot make the service hold a
    socket for each: at most ``IDLE_MAX`` idle connections in all."""
    session = guarded_session()
    with contextlib.ExitStack() as stack:
        for _ in range(direct.IDLE_MAX + 8):
            s = stack.enter_context(hostile_server())
            s.routes["/fhir"] = json_answer(PATIENT)
            assert read(f"{s.base}/fhir/Patient/p", session)[0] == 200
        assert direct._IDLE._count == direct.IDLE_MAX
        kept = sum(len(idle) for idle in direct._IDLE._by_origin.values())
        assert kept == direct.IDLE_MAX


def test_a_forked_child_starts_with_no_connections_even_if_the_pool_was_busy(server):
    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    assert read(f"{server.base}/fhir/Patient/p")[0] == 200
    held = direct._IDLE
    with held._lock:  # another thread was using the pool at the fork
        # what runs in the child, where that lock stays held for ever: it must not wait
        child = threading.Thread(target=direct._reset_idle, daemon=True)
        child.start()
        child.join(2)
        assert not child.is_alive()
    assert direct._IDLE is not held and direct._IDLE._count == 0


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


@pytest.mark.parametrize("coding", ["gzip", "x-gzip"])
def test_a_compressed_answer_in_several_members_is_read_whole(server, coding):
    raw = gzip.compress(b'{"resourceType": ') + gzip.compress(b'"Patient", "id": "p"}')
    server.routes["/fhir/Patient"] = gzip_answer(raw + b"\x00\x00trailing", coding)
    status, body = read(f"{server.base}/fhir/Patient/p")
    assert status == 200 and json.loads(body) == PATIENT


def test_a_compression_bomb_stops_at_the_size_cap(server):
    bomb = gzip.compress(b" " * 50_000_000)  # 50 MB in about 50 KB
    server.routes["/fhir/Observation"] = gzip_answer(bomb)
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="larger than"):
        read(f"{server.base}/fhir/Observation", max_bytes=1_000_000)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "coding, raw",
    [("br", b"\x1b\x00"), ("gzip", gzip.compress(b'{"resourceType": "Patient"}')[:-12])],
    ids=["not asked for", "truncated"],
)
def test_an_answer_that_cannot_be_decoded_is_not_read(server, coding, raw):
    server.routes["/fhir/Patient"] = gzip_answer(raw, coding)
    with pytest.raises(FetchFailed):
        read(f"{server.base}/fhir/Patient/p")


def test_other_statuses_are_returned_and_the_next_read_works(server):
    server.routes["/fhir/Patient/gone"] = json_answer({"resourceType": "OperationOutcome"}, 404)
    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    session = guarded_session()
    assert read(f"{server.base}/fhir/Patient/gone", session) == (404, b"")
    assert read(f"{server.base}/fhir/Patient/p", session)[0] == 200


@pytest.mark.parametrize(
    "query",
    [
        "code=http://loinc.org|53040-2,x y",
        "patient=a[0]&_elements=id,subject&x=%7C|ü",
        "subject=Patient/p%2F1&date=ge2020-01-01T00:00:00+01:00",
    ],
)
def test_the_url_is_sent_encoded_as_requests_would_send_it(server, query):
    import requests

    server.routes["/fhir/Observation"] = json_answer({"resourceType": "Bundle"})
    url = f"{server.base}/fhir/Observation?{query}"
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    session = guarded_session()
    if not url.isascii():
        assert not direct.direct_adapter(session, url)  # requests' own way, then
    read(url, session)
    [(path, _)] = server.requests
    assert path == prepared.path_url


def _as_requests_sends(url: str) -> str:
    import requests

    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return prepared.path_url


@pytest.mark.parametrize(
    "tail",
    [
        "",
        "?",
        "?a=1",
        "?code=http://loinc.org|53040-2,http://loinc.org|57979-7&_count=100",
        "?x=%7c|%7C",
        "?x=50%&y=%7C",  # a "%" that starts no escape: every "%" is encoded then
        "?x=%zz%41",
        '?x=a b\tc"<>^`{}',
        "?a=1?b=2",
        "?x=1#frag|x",
        "#frag?x=|",
        "/../x/./y?z=|",
        "?x=ü|",
    ],
)
def test_the_wire_url_is_what_requests_sends(tail):
    url = f"http://fhir.example:8080/r4/Observation{tail}"
    scheme, host, port, target = direct._wire_url(url)
    assert (scheme, host, port) == ("http", "fhir.example", 8080)
    assert target == _as_requests_sends(url)


def test_the_wire_url_is_what_requests_sends_for_any_ascii_query():
    import random

    rng = random.Random(12)
    alphabet = [chr(c) for c in range(32, 127)] + ["%7c", "%41", "%", "%2", "|"] * 5
    for _ in range(2000):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        url = f"https://fhir.example/Observation?{query}"
        assert direct._wire_url(url)[3] == _as_requests_sends(url), query


def test_a_failed_read_carries_no_trace_of_the_token(server):
    """A token that cannot be sent (a line break in it) fails the read; the failure holds
    neither the token nor the error that quoted it, for anyone who inspects it."""
    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    with pytest.raises(FetchFailed) as failed:
        bounded_get(
            guarded_session(),
            f"{server.base}/fhir/Patient/p",
            deadline=time.monotonic() + 2,
            max_bytes=1000,
            timeout=2,
            headers={"Authorization": "Bearer secret-token\r\nX-Injected: 1"},
        )
    assert failed.value.__context__ is None and failed.value.__cause__ is None
    assert "secret-token" not in str(failed.value)
    assert server.requests == []


def test_direct_reads_are_metered(server):
    server.routes["/fhir/Patient"] = json_answer(PATIENT)
    session = guarded_session()
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
    _proxies_for_origin.cache_clear()
    try:
        assert read("http://fhir.example.test/fhir/Patient/p")[0] == 200
    finally:
        _proxies_for_origin.cache_clear()
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
    session = guarded_session()
    session.verify = str(certificate[0])  # as REQUESTS_CA_BUNDLE sets it
    for _ in range(2):
        status, body = read(f"{tls_server.base}/fhir/Patient/p", session)
        assert status == 200 and json.loads(body) == PATIENT
    assert len(set(tls_server.peers)) == 1  # kept alive


def test_https_with_a_certificate_no_trusted_ca_signed_is_refused(tls_server):
    with pytest.raises(FetchFailed):
        read(f"{tls_server.base}/fhir/Patient/p")  # certifi's bundle, as requests'
    assert tls_server.requests == []


def test_https_to_a_name_the_certificate_does_not_cover_is_refused(tls_server, certificate):
    session = guarded_session()
    session.verify = str(certificate[0])
    with pytest.raises(FetchFailed):
        read(f"https://127.0.0.2:{tls_server.port}/fhir/Patient/p", session)
    assert tls_server.requests == []


# -- reads sent ahead (``send_get``: a hook call's reads all under way at once) ---------------

BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": PATIENT}]}
AHEAD = ["Observation?patient=p", "MedicationRequest?patient=p", "Patient/p"]


class _NoThreads(concurrent.futures.Executor):
    def submit(self, *args, **kwargs):
        raise AssertionError("a read sent ahead went to a thread")


class _Timed(GuardedAdapter):
    """Records what the metrics would: (status, seconds) of each read."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int | None, float]] = []

    def observe(self, status, seconds, timed_out=False):
        self.seen.append((status, seconds))


def _client(server, session):
    from cds_service.fhir.patient_data import FhirClient

    return FhirClient(f"{server.base}/fhir", "t", timeout=2, max_pages=3, session=session)


def _take_all(client):
    return [client.search(q, Trace()) if "?" in q else [client.read(q)] for q in AHEAD]


def _keep_three_connections(server, session) -> None:
    """A first call: no connection is kept yet, so its reads run on threads, connecting side
    by side (answered slowly, so that none is free for another); afterwards the three
    connections are kept alive."""
    routes = dict(server.routes)
    _serve_ahead(server, delay=0.2, all_slow=True)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        first = _client(server, session)
        first.send_ahead(AHEAD, pool)
        assert _take_all(first) == [[PATIENT]] * 3
    assert direct._IDLE._count == 3
    server.routes.update(routes)
    with server.lock:
        server.requests.clear()
        server.peers.clear()


def _serve_ahead(server, delay: float = 0.0, all_slow: bool = False) -> None:
    """The three reads; the search for results answered after ``delay`` (all of them, if
    ``all_slow``)."""
    server.routes["/fhir/Observation"] = json_answer(BUNDLE, delay=delay)
    server.routes["/fhir/MedicationRequest"] = json_answer(BUNDLE, delay=delay * all_slow)
    server.routes["/fhir/Patient"] = json_answer(PATIENT, delay=delay * all_slow)


def test_reads_sent_ahead_on_kept_alive_connections_are_all_written_before_any_is_read(server):
    _serve_ahead(server)
    session = guarded_session()
    _keep_three_connections(server, session)
    client = _client(server, session)
    client.send_ahead(AHEAD, _NoThreads())  # no thread: written here, on three connections
    deadline = time.monotonic() + 2
    while len(server.paths()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(p.split("?")[0] for p in server.paths()) == [
        "/fhir/MedicationRequest",
        "/fhir/Observation",
        "/fhir/Patient/p",
    ]
    assert _take_all(client) == [[PATIENT]] * 3  # each read's own answer, taken in any order
    assert len(set(server.peers)) == 3
    assert direct._IDLE._count == 3  # kept again for the next call


def test_a_read_sent_ahead_is_timed_until_its_answer_arrives_not_until_it_is_taken(server):
    _serve_ahead(server, delay=0.4)
    session = guarded_session()
    timed = _Timed()
    session.mount("http://", timed)
    _keep_three_connections(server, session)
    timed.seen.clear()
    client = _client(server, session)
    client.send_ahead(AHEAD[::2], _NoThreads())  # the slow search and the patient
    assert client.search(AHEAD[0], Trace()) == [PATIENT]  # meanwhile the patient's answer came
    assert client.read(AHEAD[2]) == PATIENT
    (search_status, search_s), (patient_status, patient_s) = timed.seen
    assert search_status == patient_status == 200
    assert search_s >= 0.4 and patient_s < 0.2


def test_a_read_sent_ahead_and_not_taken_is_dropped_with_its_connection(server):
    _serve_ahead(server)
    session = guarded_session()
    assert read(f"{server.base}/fhir/Patient/p", session)[0] == 200  # one connection kept
    client = _client(server, session)
    client.send_ahead(["Patient/p"], _NoThreads())
    client.close()
    assert direct._IDLE._count == 0  # its answer unread: the connection cannot serve again
    assert read(f"{server.base}/fhir/Patient/p", session)[0] == 200  # a new one does


def test_nothing_outside_the_fhir_server_base_is_sent_ahead(server):
    _serve_ahead(server)
    client = _client(server, guarded_session())
    client.send_ahead(["../Patient/p", "../../x?y=1", "Patient/a b"], _NoThreads())
    client.close()
    time.sleep(0.1)
    assert server.paths() == []
