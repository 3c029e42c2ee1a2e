"""Fixtures for integration tests that need a real FHIR R4 server or a real PostgreSQL.

The ``fhir_server`` fixture starts ``fhir_server/server.mjs`` (Medplum's FHIR router over an
in-memory repository) once per test session. It needs Node.js >= 20 and npm; the first run
installs the pinned npm packages from ``fhir_server/package-lock.json`` with ``npm ci``.

The server's data lives in memory and is shared by every test of the session: use resource ids
that are unique to your test (PUT with fixed ids makes loading idempotent).
"""

from __future__ import annotations

import glob
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERVER_DIR = Path(__file__).parent / "fhir_server"
STARTUP_TIMEOUT_S = 60
NPM_INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class FhirServer:
    """A running test FHIR server: ``base_url`` is e.g. ``http://127.0.0.1:41234/fhir``."""

    base_url: str
    token: str
    log_path: Path = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """Headers for a FHIR JSON request carrying the bearer token."""
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/fhir+json",
        }


def _npm_install_needed() -> bool:
    marker = SERVER_DIR / "node_modules" / ".package-lock.json"
    lock = SERVER_DIR / "package-lock.json"
    return not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime


def _npm_install(npm: str) -> None:
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=SERVER_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_INSTALL_TIMEOUT_S,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`npm ci` failed in {SERVER_DIR} (exit {result.returncode}):\n"
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
            line = lines.get(timeout=STARTUP_TIMEOUT_S)
            if line is None:
                raise RuntimeError(f"exited with code {proc.wait()}")
            if line.startswith("LISTENING "):
                return int(line.split()[1])
    except (queue.Empty, RuntimeError, ValueError) as exc:
        proc.kill()
        reason = "timed out" if isinstance(exc, queue.Empty) else str(exc)
        pytest.fail(
            f"FHIR test server did not start ({reason}). Its stderr:\n"
            f"{log_path.read_text(errors='replace')}"
        )


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirServer]:
    """Start the Medplum-based FHIR R4 test server for this session and yield its address."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip(
            "Node.js not found: integration tests need node>=20 and npm on PATH "
            "to run the FHIR test server (tests/integration/fhir_server)."
        )
    if _npm_install_needed():
        _npm_install(npm)

    token = "integration-test-token"
    env = {**os.environ, "FHIR_TOKEN": token, "PORT": "0"}
    log_dir = Path(tempfile.mkdtemp(prefix="fhir-server-"))
    log_path = log_dir / "stderr.log"
    with open(log_path, "w") as stderr:
        proc = subprocess.Popen(
            [node, "server.mjs", "0"],
            cwd=SERVER_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        port = _wait_for_port(proc, log_path)
        yield FhirServer(base_url=f"http://127.0.0.1:{port}/fhir", token=token, log_path=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(log_dir, ignore_errors=True)


# -- PostgreSQL -------------------------------------------------------------------------------
# ``postgres_server`` starts a throw-away PostgreSQL cluster from the server binaries on this
# machine once per session (as ``nobody`` when run as root, which PostgreSQL refuses) and skips
# with a message where no PostgreSQL server is installed. ``postgres_url`` is a new, empty
# database on it for each test.


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql")
    # Not under pytest's tmp dir: ``nobody`` cannot enter root's private folders.
    root = Path(tempfile.mkdtemp(prefix="pgx-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        shutil.chown(root, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = root / "data", _free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "pgx"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -h 127.0.0.1 -k {root}"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield f"postgresql+psycopg://pgx@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        postgres_server.replace("+psycopg", "") + "/postgres", autocommit=True
    ) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"
