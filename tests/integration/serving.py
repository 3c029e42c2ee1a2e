"""Start real processes for the integration tests and the benchmarks: ``pgx-cds serve`` on a
free port, and the test FHIR R4 server (``fhir_server/server.mjs``: Medplum's FHIR router over
an in-memory repository; Node.js >= 20 and npm, the pinned packages installed with ``npm ci``
on first use)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

ROOT = Path(__file__).resolve().parents[2]
PGX_CDS = str(Path(sys.executable).parent / "pgx-cds")
NO_PREFETCH = (
    ROOT / "sandbox" / "requests" / "no-prefetch" / "order-select-pgx-cyp2d6-um-codeine.json"
)


FHIR_SERVER_DIR = Path(__file__).parent / "fhir_server"
FHIR_STARTUP_TIMEOUT_S = 60
NPM_INSTALL_TIMEOUT_S = 600


class HarnessError(Exception):
    """A test server could not be started; the message says why (with its log)."""


def node_and_npm() -> tuple[str, str] | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    return (node, npm) if node and npm else None


def _npm_install_needed() -> bool:
    marker = FHIR_SERVER_DIR / "node_modules" / ".package-lock.json"
    lock = FHIR_SERVER_DIR / "package-lock.json"
    return not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime


def _npm_install(npm: str) -> None:
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=FHIR_SERVER_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_INSTALL_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise HarnessError(
            f"`npm ci` failed in {FHIR_SERVER_DIR} (exit {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )


def _wait_for_port(proc: subprocess.Popen[str], log_path: Path) -> int:
    """Read the server's stdout until its ``LISTENING <port>`` line, then keep draining it."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="fhir-server-stdout", daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=FHIR_STARTUP_TIMEOUT_S)
            if line is None:
                raise RuntimeError(f"exited with code {proc.wait()}")
            if line.startswith("LISTENING "):
                return int(line.split()[1])
    except (queue.Empty, RuntimeError, ValueError) as exc:
        proc.kill()
        reason = "timed out" if isinstance(exc, queue.Empty) else str(exc)
        raise HarnessError(
            f"FHIR test server did not start ({reason}). Its stderr:\n"
            f"{log_path.read_text(errors='replace')}"
        ) from None


@contextmanager
def run_fhir_server(token: str, base_path: str = "/fhir") -> Iterator[tuple[str, Path]]:
    """The test FHIR server, running: its base URL (``http://127.0.0.1:<port>/fhir``, or
    ``base_path``; every request needs ``Authorization: Bearer <token>``, any with ``none``)
    and its stderr log."""
    tools = node_and_npm()
    if tools is None:
        raise HarnessError("Node.js and npm are needed for the FHIR test server")
    node, npm = tools
    if _npm_install_needed():
        _npm_install(npm)
    env = {**os.environ, "FHIR_TOKEN": token, "PORT": "0", "FHIR_BASE_PATH": base_path}
    log_dir = Path(tempfile.mkdtemp(prefix="fhir-server-"))
    log_path = log_dir / "stderr.log"
    with open(log_path, "w") as stderr:
        proc = subprocess.Popen(
            [node, "server.mjs", "0"],
            cwd=FHIR_SERVER_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        port = _wait_for_port(proc, log_path)
        yield f"http://127.0.0.1:{port}{base_path}", log_path
    finally:
        stop_process(proc)
        shutil.rmtree(log_dir, ignore_errors=True)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> float:
    """SIGTERM, then SIGKILL after ``timeout``; returns how long the process took to exit."""
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return time.monotonic() - started


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
    stderr: IO[str] | None = field(repr=False)  # None: not kept (benchmarks)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        if self.stderr is None:
            return "(the log was not kept)"
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self, timeout: float = 10) -> float:
        """SIGTERM; returns how long the process took to exit."""
        return stop_process(self.proc, timeout)


def start_service(
    env: dict[str, str],
    *args: str,
    wait: bool = True,
    keep_log: bool = True,
    port: int | None = None,
) -> Service:
    """``pgx-cds serve`` on ``port`` (default: a free one); ``keep_log=False`` (benchmarks):
    its log is dropped rather than written to a file."""
    port = port or free_port()
    stderr = tempfile.TemporaryFile("w+") if keep_log else None  # noqa: SIM115 (lives as long as the service)
    proc = subprocess.Popen(
        [PGX_CDS, "serve", "--port", str(port), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
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
