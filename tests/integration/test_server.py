"""``pgx-cds serve`` as a real process: body limits, graceful stop, metrics across workers,
JSON logs with request ids, and one-line start-up errors."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from serving import PGX_CDS, ROOT, Service, clean_env, free_port, no_prefetch_request
from serving import start_service as start

SANDBOX = ROOT / "sandbox" / "requests"
PM_CODEINE = json.loads((SANDBOX / "order-select-pgx-cyp2d6-pm-codeine.json").read_text())
HOOK = "/cds-services/pgx-order-select"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    db = tmp_path_factory.mktemp("db") / "feedback.sqlite3"
    env = clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{db}", PGX_CDS_LOG_FORMAT="json")
    running = start(env, "--workers", "2", "--threads", "2")
    yield running
    running.stop()


def _raw(port: int, head: bytes, body: bytes = b"", chunk: int = 0) -> bytes:
    """Send a request by hand; return the status line and headers the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            if chunk:
                for i in range(0, len(body), chunk):
                    part = body[i : i + chunk]
                    sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            elif body:
                sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all: that is the point
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_a_body_announced_larger_than_5_mb_is_refused_before_it_is_sent(service: Service):
    head = (
        f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = _raw(service.port, head)  # no body follows: the server must not wait for it
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5


def test_a_chunked_body_over_5_mb_is_refused(service: Service):
    head = (
        f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer = _raw(service.port, head, b" " * (6 * 1024 * 1024), chunk=256 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # a small chunked body is read normally
    small = json.dumps(PM_CODEINE).encode()
    assert _raw(service.port, head, small, chunk=1000).startswith(b"HTTP/1.1 200")


def _raw_answer(port: int, raw: bytes) -> tuple[bytes, bytes]:
    """(status line and headers, body) the server answers to ``raw`` before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /cds-services HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /cds-services HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad\x01: y\r\n\r\n",
        b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["two-content-lengths", "unknown-transfer-coding", "control-char", "long-path"],
)
def test_requests_gunicorn_refuses_get_a_json_4xx(service: Service, raw: bytes):
    head, body = _raw_answer(service.port, raw)
    status = int(head.split(b" ", 2)[1])
    assert 400 <= status < 500, head
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"]


def test_a_malformed_chunked_body_is_a_400_naming_the_problem(service: Service):
    head, body = _raw_answer(
        service.port,
        f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".encode(),
    )
    assert head.startswith(b"HTTP/1.1 400"), head
    assert "chunked" in json.loads(body)["error"]


def test_metrics_count_the_calls_of_every_worker(service: Service):
    def count() -> float:
        text = requests.get(f"{service.url}/metrics", timeout=5).text
        lines = [
            line
            for line in text.splitlines()
            if line.startswith("pgx_cds_cards_total{")
            and 'drug="codeine"' in line
            and 'gene="CYP2D6"' in line
        ]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    before = count()
    # new connections each time: gunicorn spreads them over both workers
    for _ in range(6):
        answer = requests.post(f"{service.url}{HOOK}", json=PM_CODEINE, timeout=10)
        assert len(answer.json()["cards"]) == 1
    # (counted once each answer has been sent: give the last ones a moment)
    deadline = time.monotonic() + 5
    while count() < before + 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count() == before + 6
    text = requests.get(f"{service.url}/metrics", timeout=5).text
    assert 'pgx_cds_knowledge_info{version="' in text
    assert 'pgx_cds_http_requests_total{endpoint="hook",service="pgx-order-select"' in text
    assert "pgx_cds_http_request_duration_seconds_bucket" in text


def test_json_logs_carry_the_request_id_and_no_patient(service: Service):
    answer = requests.post(
        f"{service.url}{HOOK}", json=PM_CODEINE, headers={"X-Request-ID": "ehr-42"}, timeout=10
    )
    assert answer.headers["X-Request-ID"] == "ehr-42"
    time.sleep(0.2)
    lines = [json.loads(line) for line in service.log().splitlines() if line.strip()]
    ours = [line for line in lines if line.get("request_id") == "ehr-42"]
    assert ours and all(line["level"] in ("INFO", "DEBUG") for line in ours)
    assert PM_CODEINE["context"]["patientId"] not in service.log()


# -- no text a caller chose in the log, gunicorn's own messages included ---------------------

MRN = "patient-MRN-4455667"
JWT = "eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJwYXRpZW50LU1STi00NDU1NjY3In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture(scope="module")
def debug_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One worker of 4 threads, logging at DEBUG (where gunicorn says most)."""
    db = tmp_path_factory.mktemp("db") / "feedback.sqlite3"
    env = clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{db}", PGX_CDS_LOG_LEVEL="DEBUG")
    running = start(env, "--workers", "1")
    yield running
    running.stop()


def _logged(service: Service, text: str, timeout: float = 5) -> str:
    """The service's log, once ``text`` is in it (or the time is up)."""
    deadline = time.monotonic() + timeout
    while text not in service.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    return service.log()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (f"GET /cds-services/x HTTP/{MRN}\r\nHost: x\r\n\r\n", "HTTP Version"),
        (f"{MRN} / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP method"),
        (f"GET / HTTP/1.1\r\nHost: x\r\nBad Header {MRN}: {JWT}\r\n\r\n", "header name"),
        (f"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {MRN}\r\n\r\n", "transfer coding"),
    ],
    ids=["version", "method", "header-name", "transfer-coding"],
)
def test_a_request_gunicorn_refuses_is_not_quoted_in_the_log(debug_service, raw, problem):
    answer = _raw(debug_service.port, raw.encode())
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 501")), answer[:200]
    log = _logged(debug_service, problem)
    assert problem in log  # what was wrong is logged, not the request
    assert MRN not in log and JWT not in log


def test_a_request_broken_off_in_its_headers_is_not_quoted_in_the_log(debug_service):
    with socket.create_connection(("127.0.0.1", debug_service.port), timeout=10) as sock:
        sock.sendall(
            f"POST /cds-services/{MRN} HTTP/1.1\r\nAuthorization: Bearer {JWT}\r\nHo".encode()
        )
    log = _logged(debug_service, "a client left before its request was complete")
    assert "a client left before its request was complete" in log
    assert MRN not in log and JWT not in log


# -- slow clients (slowloris) ------------------------------------------------------------------


# Clients that send nothing, stall or drip: tests/integration/test_slow_clients.py.


def test_clients_that_never_close_after_their_answer_do_not_hold_the_service(
    debug_service: Service,
):
    """Each asks with 'Connection: close', reads its answer and keeps its side open. gunicorn
    lingers up to 2 s for such a client to close, and did so on the loop that accepts
    connections: three of them held every other caller of a worker for about 6 s."""
    service = debug_service  # one worker
    lingering = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        lingering.append(sock)
    try:
        time.sleep(0.3)  # answered, and (before the fix) the lingering had begun
        started = time.monotonic()
        for _ in range(3):
            assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200
        assert time.monotonic() - started < 1.5
    finally:
        for sock in lingering:
            sock.close()


class _SlowFhir(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(1.5)
        body = b'{"resourceType": "Bundle", "type": "searchset", "entry": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_sigterm_finishes_the_request_in_flight_and_stops_within_5_s(tmp_path: Path):
    fhir = ThreadingHTTPServer(("127.0.0.1", 0), _SlowFhir)
    threading.Thread(target=fhir.serve_forever, daemon=True).start()
    env = clean_env(
        PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PGX_CDS_FHIR_TIMEOUT="5"
    )
    service = start(env, "--workers", "1")
    body = no_prefetch_request(f"http://127.0.0.1:{fhir.server_port}/fhir")
    answers: list[requests.Response] = []
    call = threading.Thread(
        target=lambda: answers.append(requests.post(f"{service.url}{HOOK}", json=body, timeout=10))
    )
    try:
        call.start()
        time.sleep(0.5)  # the service is now waiting on the slow FHIR server
        took = service.stop()
        call.join(timeout=10)
    finally:
        service.stop()
        fhir.shutdown()
    assert took < 5, service.log()
    assert service.proc.returncode == 0
    assert answers and answers[0].status_code == 200, service.log()
    assert answers[0].json() == {"cards": []}


# -- start-up errors: one line, exit 2, no traceback -----------------------------------------


def _serve_fails(env: dict[str, str], *args: str, hidden: str = "") -> str:
    """The one line of a start that fails; ``hidden`` (a password) is nowhere in the output."""
    result = subprocess.run(
        [PGX_CDS, "serve", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not hidden or hidden not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("pgx-cds:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_busy_port(tmp_path: Path):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        env = clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
        line = _serve_fails(env, "--port", str(port))
    assert f"127.0.0.1:{port}" in line and "already in use" in line and "--port" in line


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--port", "-1", "greater than or equal to 1"),
        ("--port", "0", "greater than or equal to 1"),
        ("--port", "70000", "less than or equal to 65535"),
        ("--workers", "-5", "greater than or equal to 1"),
        ("--workers", "0", "greater than or equal to 1"),
        ("--workers", "65", "less than or equal to 64"),
        ("--threads", "0", "greater than or equal to 1"),
    ],
)
def test_serve_flags_are_checked_as_their_settings_are(
    tmp_path: Path, flag: str, value: str, says: str
):
    """As PGX_CDS_PORT=99999 or PGX_CDS_WORKERS=0: one line, exit 2; never the default instead
    (the port setting is a free port, in case the flag were ignored)."""
    env = clean_env(
        PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PGX_CDS_PORT=str(free_port())
    )
    line = _serve_fails(env, flag, value)
    assert f"{flag} {value}" in line and says in line


def test_malformed_trusted_issuers(tmp_path: Path):
    env = clean_env(
        PGX_CDS_TRUSTED_ISSUERS="{not json",
        PGX_CDS_PUBLIC_URL="https://cds.example.org",
        PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    line = _serve_fails(env, "--port", str(free_port()))
    assert "PGX_CDS_TRUSTED_ISSUERS" in line and "JSON" in line


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"PGX_CDS_PUBLIC_URL": "cds.example.org"}, "PGX_CDS_PUBLIC_URL: 'cds.example.org'"),
        (
            {"PGX_CDS_FHIR_SERVERS": "https://ehr.example.org/fhir,ehr2.example.org/fhir"},
            "PGX_CDS_FHIR_SERVERS: the FHIR server 'ehr2.example.org/fhir'",
        ),
        (
            {
                "PGX_CDS_TRUSTED_ISSUERS": '{"https://ehr.example.org": "ehr.example.org/jwks"}',
                "PGX_CDS_PUBLIC_URL": "https://cds.example.org",
                "PGX_CDS_FHIR_SERVERS": "https://ehr.example.org/fhir",
            },
            "PGX_CDS_TRUSTED_ISSUERS: the key set (JWKS) URL 'ehr.example.org/jwks'",
        ),
        ({"PGX_CDS_PRETEST_DRUGS": "codeine,aspirinx"}, "PGX_CDS_PRETEST_DRUGS: 'aspirinx'"),
    ],
)
def test_settings_that_can_never_work(tmp_path: Path, settings: dict[str, str], says: str):
    env = clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", **settings)
    line = _serve_fails(env, "--port", str(free_port()))
    assert says in line


def test_unreadable_site_codes(tmp_path: Path):
    env = clean_env(
        PGX_CDS_SITE_CODES=str(tmp_path / "missing.json"),
        PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    line = _serve_fails(env, "--port", str(free_port()))
    assert "missing.json" in line and "PGX_CDS_SITE_CODES" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("notaurl", "not a database URL"),
        ("mysql://pgx:s3cret@127.0.0.1:1/pgx", "mysql databases are not supported"),
        ("postgres://pgx:s3cret@127.0.0.1:1/pgx", "postgresql+psycopg://"),
        ("postgresql+psycopg2://pgx:s3cret@127.0.0.1:1/pgx", "driver psycopg2 is not supported"),
    ],
)
def test_unusable_database_url(url: str, says: str):
    env = clean_env(PGX_CDS_DATABASE_URL=url)
    line = _serve_fails(env, "--port", str(free_port()), hidden="s3cret")
    assert "PGX_CDS_DATABASE_URL" in line and says in line


@pytest.mark.parametrize("migrate", ["true", "false"])
def test_database_schema_newer_than_this_version(tmp_path: Path, migrate: str):
    db = tmp_path / "db.sqlite3"
    env = clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{db}", PGX_CDS_MIGRATE_ON_START=migrate)
    subprocess.run([PGX_CDS, "db", "upgrade"], env=env, check=True, capture_output=True)
    with sqlite3.connect(db) as conn:  # as a newer version left it, before a rollback
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    line = _serve_fails(env, "--port", str(free_port()))
    assert "revision 0999" in line and "newer than this version" in line
    assert "deploy the newer version" in line and "db upgrade" not in line


def test_data_folder_that_cannot_be_written(tmp_path: Path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    env = clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{blocker / 'feedback.sqlite3'}")
    line = _serve_fails(env, "--port", str(free_port()))
    assert "not writable by uid" in line and "chown" in line


NOW = "2026-11-29T10:00:00Z"


def test_unreachable_database_at_start_serves_hooks_and_says_so_without_the_password():
    """Hook calls do not need the database (issue 10): the service starts, logs one line naming
    the database (password hidden), and feedback answers 503 until the database is back."""
    port = free_port()  # nothing listens there
    env = clean_env(PGX_CDS_DATABASE_URL=f"postgresql+psycopg://pgx:s3cret@127.0.0.1:{port}/pgx")
    service = start(env, "--workers", "1")
    try:
        ready = requests.get(f"{service.url}/readyz", timeout=10).json()
        assert ready["status"] == "degraded" and ready["database"] == "unavailable"
        feedback = requests.post(
            f"{service.url}/cds-services/pgx-order-select/feedback",
            json={
                "feedback": [
                    {
                        "card": "c",
                        "outcome": "overridden",
                        "outcomeTimestamp": "2026-11-29T10:00:00Z",
                    }
                ]
            },
            timeout=15,
        )
        assert feedback.status_code == 503 and feedback.headers["Retry-After"]
    finally:
        service.stop()
    log = service.log()
    assert f"127.0.0.1:{port}" in log and "unreachable" in log
    assert "s3cret" not in log
