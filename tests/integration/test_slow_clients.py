"""Issue 26, item 1: idle and slow connections do not starve the other callers.

``pgx-cds serve`` with 2 workers of 4 threads, and 4 x (workers x threads) = 32 connections
that send nothing or drip their headers a byte at a time: before, they held every request
thread (``/healthz`` took 14 s or timed out); now they wait on the workers' loops
(web/gather.py). The bounds are generous (the machine is shared); the figures are printed
(``pytest -s``) and the issue's goal is a p99 under 100 ms.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from serving import ROOT, Service, clean_env
from serving import start_service as start

from cds_service.web.gather import HEAD_TIMEOUT_S, READ_TIMEOUT_S

HOOK = "/cds-services/pgx-order-select"
PM_CODEINE = json.loads(
    (ROOT / "sandbox" / "requests" / "order-select-pgx-cyp2d6-pm-codeine.json").read_text()
)
WORKERS, THREADS = 2, 4
SLOW = 4 * WORKERS * THREADS


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    db = tmp_path_factory.mktemp("db") / "feedback.sqlite3"
    env = clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{db}")
    running = start(env, "--workers", str(WORKERS), "--threads", str(THREADS))
    yield running
    running.stop()


def _idle(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _dripping(port: int, stop: threading.Event) -> socket.socket:
    """A request head, a byte every 0.2 s."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nX-Pad: " + "a" * 1000

    def drip() -> None:
        for byte in head.encode():
            if stop.wait(0.2):
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return

    threading.Thread(target=drip, daemon=True).start()
    return sock


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _healthz_seconds(port: int) -> float:
    """One liveness probe as Kubernetes sends it: a new connection each time."""
    started = time.perf_counter()
    answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=20)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    return time.perf_counter() - started


def test_idle_and_dripping_connections_do_not_starve_healthz_or_hook_calls(service: Service):
    stop = threading.Event()
    slow = [_idle(service.port) for _ in range(SLOW // 2)]
    slow += [_dripping(service.port, stop) for _ in range(SLOW // 2)]
    try:
        time.sleep(0.5)  # every one of them accepted (before: each holding a thread)
        probes = [_healthz_seconds(service.port) for _ in range(100)]
        hook_seconds = []
        for _ in range(5):
            started = time.perf_counter()
            answer = requests.post(f"{service.url}{HOOK}", json=PM_CODEINE, timeout=20)
            hook_seconds.append(time.perf_counter() - started)
            assert answer.status_code == 200 and len(answer.json()["cards"]) == 1
    finally:
        stop.set()
        for sock in slow:
            sock.close()
    p99 = statistics.quantiles(probes, n=100)[98]
    print(
        f"\n{SLOW} slow connections ({SLOW // 2} idle, {SLOW // 2} dripping) against "
        f"{WORKERS} workers x {THREADS} threads: /healthz p50 "
        f"{statistics.median(probes) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max "
        f"{max(probes) * 1000:.1f} ms; hook calls {max(hook_seconds) * 1000:.0f} ms at most"
    )
    assert p99 < 0.5, probes  # goal: 0.1 s (a generous bound on a shared machine)
    assert max(hook_seconds) < 3, hook_seconds


def test_a_stalled_head_is_closed_and_a_stalled_body_answered_408(service: Service):
    """Nothing waits for them on a thread; the loop closes the first after HEAD_TIMEOUT_S and
    answers the second 408 after READ_TIMEOUT_S."""
    head = _idle(service.port)
    head.sendall(b"POST /cds-services/x HTTP/1.1\r\nHost: x\r\nAuthoriz")
    body = _idle(service.port)
    body.sendall(
        f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        'Content-Length: 1000\r\n\r\n{"hook'.encode()
    )
    started = time.monotonic()
    assert head.recv(65536) == b""  # closed without an answer
    closed = time.monotonic() - started
    assert HEAD_TIMEOUT_S - 1 < closed < HEAD_TIMEOUT_S + 3, closed
    data = b""
    while chunk := body.recv(65536):
        data += chunk
    answered = time.monotonic() - started
    status, _, rest = data.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408") and b"Connection: close" in status, status
    assert "did not arrive" in json.loads(rest)["error"]
    assert READ_TIMEOUT_S - 1 < answered < READ_TIMEOUT_S + 3, answered
    head.close()
    body.close()


def test_one_client_address_cannot_hold_every_connection(service: Service):
    """Past MAX_PER_CLIENT connections of one address being gathered in a worker, another is
    closed at once; the service still answers."""
    from cds_service.web.gather import MAX_PER_CLIENT

    many = []
    try:
        for _ in range(WORKERS * MAX_PER_CLIENT + 40):
            many.append(_idle(service.port))
        time.sleep(0.5)
        refused = sum(_closed(sock) for sock in many)
        assert refused >= 40
        assert _healthz_seconds(service.port) < 2
    finally:
        for sock in many:
            sock.close()
