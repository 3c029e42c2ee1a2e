"""The patient's summary as a SMART on FHIR app, launched end to end from a real SMART launcher.

The open-source SMART Health IT launcher (smart-on-fhir/smart-launcher-v2, its backend run
from source with ts-node) stands in for the EHR: its FHIR endpoint proxies the FHIR test
server, its authorization server runs the EHR launch. The patient-view card of the running
service carries the app's link; the launcher opens that link as an EHR does (``iss`` and
``launch``), and headless Chromium follows everything that comes after: the service's
redirect to the launcher's authorize endpoint (PKCE S256), the launcher's redirect back with a
code, the code exchanged for a token, the patient read with it through the launcher's FHIR
proxy, the page. The QR code read from the page's screenshot verifies against the service's
``/.well-known/jwks.json``.

Needs Node.js, Chromium and the launcher's source: ``PGX_CDS_SMART_LAUNCHER_SRC`` (a checkout
of https://github.com/smart-on-fhir/smart-launcher-v2; ``npm ci`` is run there when needed),
else a clone of the pinned commit (kept in ``~/.cache/pgx-cds-tests``); skips with a message
where one of them cannot be had (CI machines without GitHub).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from serving import (
    HarnessError,
    clean_env,
    free_port,
    node_and_npm,
    run_fhir_server,
    start_service,
    stop_process,
)
from test_patient_card import GENES, PATIENT, _chromium, _read_qr, pgx_cds

from cds_service.knowledge.loader import Knowledge
from cds_service.settings import default_knowledge_dir
from cds_service.summary import bundle, shc

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_REPO = "https://github.com/smart-on-fhir/smart-launcher-v2"
LAUNCHER_COMMIT = "64374254347fdfa9625f9112c77813aa75fa9f3e"  # 2025-05-19 ("npm audit fix")
CLIENT_ID = "pgx-cds-patient-card"
#: what an automated browser needs on a machine with no outside network (Debian's chromium)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@functools.cache
def _launcher_source() -> Path | str:
    """The launcher's source, or why it cannot be had (tried once a run)."""
    given = os.environ.get("PGX_CDS_SMART_LAUNCHER_SRC")
    if given:
        return Path(given)
    cache = Path.home() / ".cache" / "pgx-cds-tests" / f"smart-launcher-v2-{LAUNCHER_COMMIT[:12]}"
    if (cache / "package.json").exists():
        return cache
    cloned = subprocess.run(
        ["git", "clone", "--quiet", LAUNCHER_REPO, str(cache)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if cloned.returncode == 0:
        checkout = subprocess.run(
            ["git", "-C", str(cache), "checkout", "--quiet", LAUNCHER_COMMIT],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if checkout.returncode == 0:
            return cache
    shutil.rmtree(cache, ignore_errors=True)
    return (
        f"the SMART launcher's source could not be had ({LAUNCHER_REPO} not reachable: "
        f"{(cloned.stderr or '').strip()[:200]}); set PGX_CDS_SMART_LAUNCHER_SRC to a checkout"
    )


@pytest.fixture(scope="module")
def open_fhir_server() -> Iterator[str]:
    """A FHIR test server without a token of its own (the launcher's proxy sends none), at
    the root of its address (the launcher's encounter lookup takes that for granted)."""
    if node_and_npm() is None:
        pytest.skip("Node.js not found: the SMART launch test needs node>=20 and npm")
    try:
        with run_fhir_server("none", base_path="") as (base_url, _):
            yield base_url
    except HarnessError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def launcher(open_fhir_server: str) -> Iterator[str]:
    """The SMART launcher, running: its base URL."""
    tools = node_and_npm()
    assert tools is not None  # (open_fhir_server skipped otherwise)
    source = _launcher_source()
    if isinstance(source, str):
        pytest.skip(source)
    if not (source / "node_modules" / ".package-lock.json").exists():
        installed = subprocess.run(
            [tools[1], "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if installed.returncode != 0:
            pytest.skip(f"`npm ci` of the SMART launcher failed: {installed.stderr[-500:]}")
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NODE_ENV": "production",
        "FHIR_SERVER_R4": open_fhir_server,
        "FHIR_SERVER_R3": "",
        "FHIR_SERVER_R2": "",
        "SECRET": "pgx-cds integration test",
    }
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            str(source / "node_modules" / ".bin" / "ts-node"),
            "--skipProject",
            "--transpile-only",
            "backend/index.ts",
        ],
        cwd=source,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/v/r4/fhir/.well-known/smart-configuration", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"the SMART launcher did not start:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def service(open_fhir_server: str, launcher: str, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    env = clean_env(
        PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path_factory.mktemp('smart') / 'service.sqlite3'}",
        PGX_CDS_PUBLIC_URL=public,
        PGX_CDS_SMART_CLIENT_ID=CLIENT_ID,
        # (the launcher and the FHIR server answer on http://127.0.0.1 here)
        PGX_CDS_ALLOW_INSECURE_HTTP="1",
    )
    loaded = pgx_cds(
        "sandbox", "load", "--fhir", open_fhir_server, env={**env, "PGX_CDS_FHIR_TOKEN": "unused"}
    )
    assert loaded.returncode == 0, loaded.stderr
    # the visit the EHR launches in (the launcher puts the patient's latest in context, and
    # asks the user to pick one, on a page of its own, when there is none)
    visit = {
        "resourceType": "Encounter",
        "id": "smart-launch-visit",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{PATIENT}"},
    }
    put = requests.put(
        f"{open_fhir_server}/Encounter/{visit['id']}",
        json=visit,
        headers={"Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert put.status_code in (200, 201), put.text
    running = start_service(env, "--workers", "1", port=port)
    try:
        yield running
    finally:
        running.stop()


def _patient_view_link(service, fhir_base: str) -> dict[str, str]:
    """The SMART link on the service's patient-view card for the patient."""
    body = {
        "hook": "patient-view",
        "hookInstance": "smart-launch-test",
        "fhirServer": fhir_base,
        "fhirAuthorization": {"access_token": "unused", "token_type": "Bearer"},
        "context": {"patientId": PATIENT, "userId": "Practitioner/doc-1"},
    }
    answer = requests.post(f"{service.url}/cds-services/pgx-patient-view", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    (card,) = answer.json()["cards"]
    (link,) = [link for link in card.get("links", []) if link.get("type") == "smart"]
    return link


def _browse(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium not found (PGX_CDS_CHROMIUM or chromium on PATH)")
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        return subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_the_patient_view_cards_app_launches_from_a_real_smart_launcher(
    service, launcher, open_fhir_server, tmp_path
):
    link = _patient_view_link(service, open_fhir_server)
    assert link["url"] == f"{service.url}/smart/launch"
    # the EHR (the launcher) opens the card's link with iss and launch, for this patient
    launch = f"{launcher}/launcher?" + urlencode(
        {"launch_uri": link["url"], "fhir_ver": "4", "patient": PATIENT, "provider": "doc-1"}
    )

    dom = _browse(launch, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = unescape(re.sub(r"<[^>]+>", " ", dom.stdout))
    assert "Testpatient" in text, dom.stdout[:3000]  # the patient the launcher put in context
    for gene, genotype in GENES.items():
        assert f'data-gene="{gene}"' in dom.stdout and genotype in text

    screenshot = tmp_path / "launched.png"
    shot = _browse(
        launch,
        "--force-device-scale-factor=2",
        "--window-size=900,3000",
        f"--screenshot={screenshot}",
    )
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    found = {t for t in _read_qr(screenshot) if t.startswith("shc:/")}
    assert len(found) == 1, "no (or more than one) shc:/ QR code on the launched page"
    keys = requests.get(f"{service.url}/.well-known/jwks.json", timeout=10).json()
    verified = shc.verify(found.pop(), keys)
    assert verified.issuer == service.url
    held = bundle.genes_in(verified.bundle, Knowledge(default_knowledge_dir()))
    assert {g: facts["genotype"] for g, facts in held.items()} == GENES
    # nothing about the patient, no code and no token in the service's log
    log = service.log()
    assert PATIENT not in log and "Testpatient" not in log
    assert not re.search(r"code=[A-Za-z0-9._-]{20,}", log)


def test_a_code_the_launcher_will_not_exchange_shows_an_error_not_the_patient(service, launcher):
    """The EHR refuses the code at its token endpoint (the launcher's simulated error): the
    app answers with the reason in words, and shows nothing of the patient."""
    launch = f"{launcher}/launcher?" + urlencode(
        {
            "launch_uri": f"{service.url}/smart/launch",
            "fhir_ver": "4",
            "patient": PATIENT,
            "provider": "doc-1",
            "auth_error": "token_invalid_token",
        }
    )
    dom = _browse(launch, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Testpatient" not in dom.stdout
    found = re.search(r"\{.*\}", unescape(re.sub(r"<[^>]+>", "", dom.stdout)), re.DOTALL)
    assert found, dom.stdout[:2000]
    assert "refused the code" in json.loads(found.group(0))["error"]
