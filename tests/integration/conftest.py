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
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from serving import HarnessError, free_port, node_and_npm, run_fhir_server


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


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirServer]:
    """Start the Medplum-based FHIR R4 test server for this session and yield its address."""
    if node_and_npm() is None:
        pytest.skip(
            "Node.js not found: integration tests need node>=20 and npm on PATH "
            "to run the FHIR test server (tests/integration/fhir_server)."
        )
    token = "integration-test-token"
    try:
        with run_fhir_server(token) as (base_url, log_path):
            yield FhirServer(base_url=base_url, token=token, log_path=log_path)
    except HarnessError as exc:
        pytest.fail(str(exc))


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
    data, port = root / "data", free_port()
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
