"""Suggestions apply in the public CDS Hooks sandbox (issue 23, item 4), proved in a browser.

The public sandbox (https://github.com/cds-hooks/sandbox) acts on the first usable action of
a suggestion only: a ``delete`` first would empty the order. This test takes a suggestion in
a build of the sandbox, in headless Chromium, as a tester does in Rx View, and checks that the
next ``order-select`` carries the replacement medication and that the service stored the
feedback as ``accepted`` with the suggestion's uuid.

Nothing of the sandbox is in this repository, and nothing here downloads it. Point
``PGX_CDS_SANDBOX_SRC`` at either

* a checkout of the sandbox repository: built here, in place, with ``npm ci && npm run build``
  (npm registry only; about two minutes) when its ``build/`` has no ``app.bundle.js``; or
* a built sandbox folder (the one with ``index.html`` and ``app.bundle.js``).

It also needs Node.js 20+ and npm (the test FHIR server, and ``playwright-core`` from
``sandbox_driver/package-lock.json``, which never downloads a browser) and Chromium
(``PGX_CDS_CHROMIUM``, else ``chromium``/``chromium-browser``/``google-chrome`` on PATH). It
skips with a message when any is missing. Run it with::

    PGX_CDS_SANDBOX_SRC=/path/to/sandbox .venv/bin/pytest -p no:cacheprovider \\
        tests/integration/test_public_sandbox.py
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving import clean_env, node_and_npm, start_service, stop_process

DRIVER = Path(__file__).parent / "sandbox_driver"
PGX_CDS = str(Path(sys.executable).parent / "pgx-cds")
BUILD_TIMEOUT_S = 1200
STEP_TIMEOUT_MS = 30000


def _chromium() -> str | None:
    named = os.environ.get("PGX_CDS_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(command: list[str], cwd: Path, timeout: float, what: str) -> None:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )


def _sandbox_build(npm: str) -> Path:
    """The built sandbox ``PGX_CDS_SANDBOX_SRC`` names, building a checkout first."""
    source = Path(os.environ["PGX_CDS_SANDBOX_SRC"]).expanduser()
    for candidate in (source, source / "build"):
        if (candidate / "app.bundle.js").exists() and (candidate / "index.html").exists():
            return candidate
    if not (source / "package.json").exists():
        pytest.fail(
            f"PGX_CDS_SANDBOX_SRC={source} is neither a checkout of the CDS Hooks sandbox (no "
            "package.json) nor a built sandbox (no index.html and app.bundle.js)"
        )
    _run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        source,
        BUILD_TIMEOUT_S,
        f"`npm ci` in {source}",
    )
    _run([npm, "run", "build"], source, BUILD_TIMEOUT_S, f"`npm run build` in {source}")
    return source / "build"


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    if not os.environ.get("PGX_CDS_SANDBOX_SRC"):
        pytest.skip(
            "PGX_CDS_SANDBOX_SRC is not set: point it at a checkout of "
            "https://github.com/cds-hooks/sandbox or at a built sandbox folder to run the "
            "headless test of suggestions in the public sandbox"
        )
    found = node_and_npm()
    if found is None:
        pytest.skip("Node.js 20+ and npm are needed to serve and drive the sandbox")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium not found: install it or set PGX_CDS_CHROMIUM to the browser")
    node, npm = found
    marker = DRIVER / "node_modules" / ".package-lock.json"
    lock = DRIVER / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        _run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            DRIVER,
            600,
            f"`npm ci` in {DRIVER}",
        )
    return {"node": node, "npm": npm, "chromium": chromium, "build": str(_sandbox_build(npm))}


@pytest.fixture(scope="module")
def sandbox(tools, fhir_server, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """The FHIR server with the sandbox patients, the service, and the sandbox in front."""
    loaded = subprocess.run(
        [PGX_CDS, "sandbox", "load", "--fhir", fhir_server.base_url, "--token", fhir_server.token],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    database = tmp_path_factory.mktemp("sandbox-db") / "feedback.sqlite3"
    service = start_service(clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{database}"))
    ui = subprocess.Popen(
        [
            tools["node"],
            str(DRIVER / "serve.mjs"),
            tools["build"],
            "0",
            fhir_server.base_url,
            fhir_server.token,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert ui.stdout is not None
        line = ui.stdout.readline()
        assert line.startswith("LISTENING "), f"the sandbox server did not start: {line!r}"
        yield {
            "sandbox": f"http://127.0.0.1:{int(line.split()[1])}",
            "discovery": f"{service.url}/cds-services",
            "database": database,
            "service": service,
        }
    finally:
        stop_process(ui)
        service.stop()


def _take(tools: dict[str, str], sandbox: dict[str, Any], case: dict[str, str]) -> dict[str, Any]:
    options = {
        "sandbox": sandbox["sandbox"],
        "discovery": sandbox["discovery"],
        "chromium": tools["chromium"],
        "timeout": STEP_TIMEOUT_MS,
        **case,
    }
    done = subprocess.run(
        [tools["node"], str(DRIVER / "take_suggestion.mjs"), json.dumps(options)],
        cwd=DRIVER,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"the driver printed no result:\n{done.stdout}\n{done.stderr}"
    result = json.loads(lines[-1])
    assert result["ok"], (result.get("error"), result.get("steps"), sandbox["service"].log())
    return result


def _medications(body: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for entry in body["context"]["draftOrders"]["entry"]:
        concept = entry["resource"].get("medicationCodeableConcept") or {}
        coding = (concept.get("coding") or [{}])[0]
        out.append((str(coding.get("code")), str(concept.get("text"))))
    return out


CASES = [
    pytest.param(
        {
            "patient": "pgx-cyp2d6-um",
            "medQuery": "Acetaminophen 300 MG / Codeine",
            "medLabel": "Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet",
            "medCode": "993781",
            "card": "Avoid codeine",
            "suggestion": "Replace with Acetaminophen",
        },
        ("313782", "Acetaminophen 325 MG Oral Tablet"),
        id="codeine-to-acetaminophen",
    ),
    pytest.param(
        {
            "patient": "pgx-cyp2d6-um",
            "medQuery": "tramadol hydrochloride 50",
            "medLabel": "tramadol hydrochloride 50 MG Oral Tablet",
            "medCode": "835603",
            "card": "Avoid tramadol",
            "suggestion": "Replace with Hydromorphone",
        },
        ("897696", "Hydromorphone Hydrochloride 2 MG Oral Tablet"),
        id="tramadol-to-hydromorphone",
    ),
]


@pytest.mark.parametrize(("case", "replacement"), CASES)
def test_taking_a_suggestion_in_the_sandbox_replaces_the_medication(
    tools, sandbox, case, replacement
):
    result = _take(tools, sandbox, case)
    # the card and its suggestion, as the service answered the sandbox
    [card] = [c for c in result["cards"] if c["summary"].startswith(case["card"])]
    [suggestion] = [s for s in card["suggestions"] if s["label"] == result["clicked"]]
    assert suggestion["actions"][0]["type"] == "create"  # the sandbox acts on the first
    # the next order-select carries the replacement, not an emptied order
    assert _medications(result["before"]) == [(case["medCode"], case["medLabel"])]
    assert _medications(result["after"]) == [replacement]
    # the sandbox's feedback: accepted, with the card's and the suggestion's uuid, stored
    feedback = result["feedback"]
    assert feedback["status"] == 200
    [item] = feedback["request"]["feedback"]
    assert item["card"] == card["uuid"] and item["outcome"] == "accepted"
    assert item["acceptedSuggestions"] == [{"id": suggestion["uuid"]}]
    with sqlite3.connect(sandbox["database"]) as db:
        rows = db.execute(
            "SELECT outcome, accepted_suggestions FROM feedback WHERE card_uuid = ?",
            (card["uuid"],),
        ).fetchall()
    assert [(outcome, json.loads(accepted)) for outcome, accepted in rows] == [
        ("accepted", [suggestion["uuid"]])
    ]
