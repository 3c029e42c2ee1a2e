"""Start ``pgx-cds serve`` as a real process on a free port (for the integration tests)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

ROOT = Path(__file__).resolve().parents[2]
PGX_CDS = str(Path(sys.executable).parent / "pgx-cds")
NO_PREFETCH = (
    ROOT / "sandbox" / "requests" / "no-prefetch" / "order-select-pgx-cyp2d6-um-codeine.json"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGX_CDS_", "PROMETHEUS_"))}
    return {**env, **settings}


@dataclass
class Service:
    proc: subprocess.Popen[str]
    port: int
    stderr: IO[str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self, timeout: float = 10) -> float:
        """SIGTERM; returns how long the process took to exit."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - started


def start_service(env: dict[str, str], *args: str, wait: bool = True) -> Service:
    port = free_port()
    stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the service)
    proc = subprocess.Popen(
        [PGX_CDS, "serve", "--port", str(port), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    service = Service(proc, port, stderr)
    if wait:
        wait_ready(service)
    return service


def wait_ready(service: Service, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{service.url}/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if service.proc.poll() is not None or time.monotonic() > deadline:
            service.stop()
            raise AssertionError(f"pgx-cds serve did not start:\n{service.log()}")
        time.sleep(0.1)


def no_prefetch_request(fhir_base: str) -> dict[str, Any]:
    return json.loads(NO_PREFETCH.read_text().replace("{{FHIR_BASE}}", fhir_base))


def without_ids(body: Any) -> Any:
    """Cards carry a fresh uuid per call; everything else must be identical."""
    if isinstance(body, dict):
        return {k: without_ids(v) for k, v in body.items() if k != "uuid"}
    if isinstance(body, list):
        return [without_ids(v) for v in body]
    return body
