"""The container image as hospital IT runs it (opt-in: it needs podman and a built image).

Run ``deploy/smoke.sh`` (builds the image, then runs this file), or set ``PGX_CDS_IMAGE`` to an
image built from the Dockerfile. ``PGX_CDS_CONTAINER_RUN_FLAGS`` adds flags to every
``podman run`` (e.g. ``--runtime runc --ulimit nofile=4096:4096`` where the default runtime
does not work). Containers use the host network so they reach the test PostgreSQL on loopback.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from serving import ROOT, free_port, without_ids
from sqlalchemy import create_engine, text

IMAGE = os.environ.get("PGX_CDS_IMAGE", "")
RUN_FLAGS = shlex.split(os.environ.get("PGX_CDS_CONTAINER_RUN_FLAGS", ""))
PODMAN = shutil.which("podman")
HOOK = "/cds-services/pgx-order-select"
PM_CODEINE = json.loads(
    (ROOT / "sandbox" / "requests" / "order-select-pgx-cyp2d6-pm-codeine.json").read_text()
)

pytestmark = pytest.mark.skipif(
    not (IMAGE and PODMAN),
    reason="container checks are opt-in: run deploy/smoke.sh, or set PGX_CDS_IMAGE to an image "
    "built from the Dockerfile (needs podman)",
)


def _podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    assert PODMAN
    result = subprocess.run(
        [PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.stderr}")
    return result


class Container:
    def __init__(self, port: int, env: dict[str, str], *extra: str) -> None:
        self.name = f"pgx-test-{uuid.uuid4().hex[:8]}"
        self.port = port
        settings = [f"--env={k}={v}" for k, v in env.items()]
        _podman(
            "run",
            "--detach",
            f"--name={self.name}",
            "--network=host",
            "--read-only",
            "--tmpfs=/tmp",
            *RUN_FLAGS,
            *settings,
            *extra,
            "--env=PGX_CDS_HOST=127.0.0.1",
            f"--env=PGX_CDS_PORT={port}",
            IMAGE,  # and its own CMD
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"container did not become ready:\n{self.logs()}")

    def logs(self) -> str:
        result = _podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_exit(self, timeout: float = 60) -> int:
        return int(_podman("wait", self.name, timeout=timeout).stdout.strip().splitlines()[-1])

    def remove(self) -> None:
        _podman("rm", "--force", "--time=0", self.name, check=False)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def _database(postgres_url: str) -> dict[str, str]:
    return {"PGX_CDS_DATABASE_URL": postgres_url, "PGX_CDS_WORKERS": "2"}


def test_runs_read_only_as_non_root_stores_feedback_in_postgresql_and_stops_fast(
    postgres_url, containers
):
    box = Container(free_port(), _database(postgres_url))
    containers.append(box)
    box.wait_ready()
    assert _podman("exec", box.name, "id", "-u").stdout.strip() == "10001"
    # the image's HEALTHCHECK command works (podman cannot schedule it without systemd here)
    assert _podman("healthcheck", "run", box.name, check=False).returncode == 0, box.logs()

    assert len(requests.post(f"{box.url}{HOOK}", json=PM_CODEINE, timeout=10).json()["cards"]) == 1
    card = str(uuid.uuid4())
    feedback = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-29T10:00:00Z"}
    stored = requests.post(f"{box.url}{HOOK}/feedback", json={"feedback": [feedback]}, timeout=10)
    assert stored.status_code == 200, stored.text
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT card_uuid FROM feedback")).scalars().all()
    engine.dispose()
    assert rows == [card]

    started = time.monotonic()
    _podman("stop", "--time=10", box.name, timeout=30)
    took = time.monotonic() - started
    assert took < 5, f"podman stop took {took:.1f} s:\n{box.logs()}"
    state = json.loads(_podman("inspect", box.name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, box.logs()


def test_a_data_volume_it_cannot_write_gives_one_clear_line(tmp_path: Path, containers):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # owned by root (or whoever runs the test), not uid 10001
    if os.geteuid() != 0:
        pytest.skip("needs a root-owned folder: run as root")
    box = Container(free_port(), {}, f"--volume={data}:/data")
    containers.append(box)
    assert box.wait_exit() == 2
    logs = box.logs()
    assert "Traceback" not in logs
    assert "not writable by uid 10001" in logs and "chown 10001" in logs, logs


def test_two_replicas_sharing_one_postgresql_answer_identically(postgres_url, containers):
    pair = [Container(free_port(), _database(postgres_url)) for _ in range(2)]
    containers.extend(pair)
    for box in pair:
        box.wait_ready()
    for path in sorted((ROOT / "sandbox" / "requests").glob("order-select-*.json")):
        body = json.loads(path.read_text())
        answers = [requests.post(f"{b.url}{HOOK}", json=body, timeout=10) for b in pair]
        assert [a.status_code for a in answers] == [200, 200], path.name
        assert without_ids(answers[0].json()) == without_ids(answers[1].json()), path.name


def test_the_image_has_no_build_tools(containers):
    result = _podman(
        "run",
        "--rm",
        *RUN_FLAGS,
        IMAGE,
        "sh",
        "-c",
        "command -v gcc cc make || echo none",
        check=False,
    )
    assert result.stdout.strip() == "none", result.stdout


# -- issue 27: go-live you can see, and the committee's report where the service runs --------


def test_a_silent_site_file_shows_in_readyz_the_logs_and_the_report(
    postgres_url, containers, tmp_path: Path
):
    """Run as the Kubernetes overlay runs it: JSON logs, a silent site file mounted read-only;
    /readyz shows the policy, the JSON line of a hook call carries its hookInstance, and the
    documented command (`pgx-cds report --html -` in the running container) writes the page."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.json").write_text('{"silent": true}')
    site.chmod(0o755)
    (site / "site.json").chmod(0o644)
    env = {
        **_database(postgres_url),
        "PGX_CDS_LOG_FORMAT": "json",
        "PGX_CDS_SITE_CONFIG": "/etc/pgx-cds/site.json",
    }
    box = Container(free_port(), env, f"--volume={site}:/etc/pgx-cds:ro")
    containers.append(box)
    box.wait_ready()
    ready = requests.get(f"{box.url}/readyz", timeout=5).json()
    assert ready["site"]["mode"] == "silent" and ready["site"]["silent"] is True
    assert ready["site"]["file"] == "/etc/pgx-cds/site.json" and len(ready["site"]["sha256"]) == 64

    body = {**PM_CODEINE, "hookInstance": "f399c67c-c703-11ea-af16-460231621f93"}
    assert requests.post(f"{box.url}{HOOK}", json=body, timeout=10).json() == {"cards": []}
    deadline = time.monotonic() + 10
    lines: list[dict] = []
    while time.monotonic() < deadline:
        lines = [
            json.loads(x)
            for x in box.logs().splitlines()
            if x.startswith("{") and '"hookInstance"' in x
        ]
        if lines:
            break
        time.sleep(0.2)
    (line,) = lines
    assert line["hookInstance"] == body["hookInstance"]
    assert (line["status"], line["service"], line["silent_cards"]) == (200, "pgx-order-select", 1)
    assert any("site policy: silent" in x for x in box.logs().splitlines())

    time.sleep(1)  # the card log is written in the background
    report = _podman("exec", box.name, "pgx-cds", "report", "--html", "-", timeout=60)
    page = report.stdout
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>"), report.stderr
    assert page.count("<svg ") == 3
    assert "codeine" in page and "Poor Metabolizer" in page  # the silent card, by recommendation
    assert "Cards issued" in report.stderr  # the table beside it, on standard error
