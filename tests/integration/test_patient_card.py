"""The patient's summary in a real browser: ``pgx-cds summary`` writes the page from the real
FHIR test server, headless Chromium renders it, the QR code is read back from the screenshot
and the card it holds is verified against the running service's ``/.well-known/jwks.json``
(the key the command line signed with is the one the service keeps in the shared database).

Needs Node.js (the FHIR test server), Chromium (``PGX_CDS_CHROMIUM`` or on PATH) and a QR
reader: ``zbarimg`` (Debian's zbar-tools) or the ``zxing-cpp`` wheel (a test dependency);
skips with a message without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from serving import PGX_CDS, Service, clean_env, free_port, wait_ready

from cds_service.knowledge.loader import Knowledge
from cds_service.settings import default_knowledge_dir
from cds_service.summary import bundle, shc

PATIENT = "pgx-cyp2d6-pm-cyp2c9-pm"
GENES = {"CYP2D6": "*4/*4", "CYP2C9": "*3/*3"}


def _chromium() -> str | None:
    given = os.environ.get("PGX_CDS_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _read_qr(image: Path) -> list[str]:
    """The QR codes in ``image``: with zbarimg where installed, else zxing-cpp."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg:
        found = subprocess.run(
            [zbarimg, "--quiet", "--raw", "-Sqrcode.enable", str(image)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return [line for line in found.stdout.splitlines() if line.strip()]
    try:
        import zxingcpp
        from PIL import Image
    except ImportError:
        pytest.skip("no QR reader: install zbar-tools (zbarimg) or the zxing-cpp wheel")
    with Image.open(image) as picture:
        return [r.text for r in zxingcpp.read_barcodes(picture.convert("L"))]


def pgx_cds(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``pgx-cds`` with ``args``, its output captured."""
    return subprocess.run(
        [PGX_CDS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def service(tmp_path: Path, fhir_server):
    port = free_port()
    env = clean_env(
        PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'service.sqlite3'}",
        PGX_CDS_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    stderr = (tmp_path / "service.log").open("w+")
    proc = subprocess.Popen(
        [PGX_CDS, "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    running = Service(proc, port, stderr)
    wait_ready(running)
    try:
        yield running, env
    finally:
        running.stop()
        stderr.close()


def test_the_card_read_from_the_rendered_page_verifies(service, fhir_server, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium not found (PGX_CDS_CHROMIUM or chromium on PATH)")
    running, env = service
    with_token = {**env, "PGX_CDS_FHIR_TOKEN": fhir_server.token}
    load = pgx_cds("sandbox", "load", "--fhir", fhir_server.base_url, env=with_token)
    assert load.returncode == 0, load.stderr
    page = tmp_path / "summary.html"
    reading = ("summary", "--fhir-server", fhir_server.base_url, "--patient", PATIENT)
    made = pgx_cds(*reading, env=with_token)
    assert made.returncode == 2  # (--html is required)
    made = pgx_cds(*reading, "--html", str(page), env=with_token)
    assert made.returncode == 0, made.stderr
    assert "card signed with key" in made.stdout
    # a real browser renders the page (as the patient opens or prints it)
    screenshot = tmp_path / "summary.png"
    shot = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=2",
            "--window-size=900,3000",
            f"--screenshot={screenshot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    found = [t for t in _read_qr(screenshot) if t.startswith("shc:/")]
    # the page's QR code and the wallet card's: one card
    assert found, "no shc:/ QR code read from the rendered page"
    assert len(set(found)) == 1
    card = found[0]
    # verified against the running service's key set (the issuer the card names)
    jwks = requests.get(f"{running.url}/.well-known/jwks.json", timeout=10)
    assert jwks.status_code == 200 and jwks.headers["Access-Control-Allow-Origin"] == "*"
    verified = shc.verify(card, jwks.json())
    assert verified.issuer == running.url
    held = bundle.genes_in(verified.bundle, Knowledge(default_knowledge_dir()))
    assert {g: facts["genotype"] for g, facts in held.items()} == GENES
    # and as another site checks one: the command line fetches the issuer's key set
    checked = pgx_cds("summary", "--verify", card, env=clean_env(), timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"VERIFIED: signed by {running.url}" in checked.stdout
    # nothing about the patient in the service's log
    assert "Testpatient" not in running.log() and PATIENT not in running.log()
    if os.environ.get("PGX_CDS_SAVE_CARD_SCREENSHOT"):  # docs/patient-card.png, by hand
        shutil.copy(screenshot, os.environ["PGX_CDS_SAVE_CARD_SCREENSHOT"])
