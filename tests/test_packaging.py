"""The built wheel works without the source tree, as hospital IT installs it.

The test builds the wheel (isolated build, pinned setuptools), installs it into a fresh venv and
runs ``pgx-cds`` from an empty temporary folder, with no PGX_CDS_KNOWLEDGE_DIR. The venv gets
the wheel's third-party dependencies from the test run's own environment (a path entry, not an
install) so the test needs no network beyond the build backend; the project itself comes only
from the wheel.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (found,) = out.glob("*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed; returns its bin folder."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr
    site = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Dependencies from this environment, after the venv's own site-packages (a plain path entry:
    # the editable install of the checkout is not activated through it).
    Path(site, "zz_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGX_CDS_")}
    return {**clean, "PGX_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'feedback.sqlite3'}"}


def _run(bin_dir: Path, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / "pgx-cds"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_wheel_ships_knowledge_sandbox_kit_migrations_and_licence(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cds_service/knowledge_files/manifest.json" in names
    assert any(n.startswith("cds_service/knowledge_files/recommendations/") for n in names)
    assert any(n.startswith("cds_service/knowledge_files/genes/") for n in names)
    assert "cds_service/sandbox_files/patients/index.json" in names
    assert any(n.startswith("cds_service/store/migrations/versions/0001") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # every module of the checkout is in it (pyproject lists the packages explicitly)
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "cds_service").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules - names == set()
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_installed_wheel_checks_its_knowledge_from_any_folder(installed, tmp_path, env) -> None:
    result = _run(installed, "knowledge", "check", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    # and it is the wheel's copy that was checked, not the checkout's
    where = subprocess.run(
        [str(installed / "python"), "-c", "import cds_service; print(cds_service.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where


def test_installed_wheel_explains_a_shipped_sandbox_request(installed, tmp_path, env) -> None:
    shipped = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "from cds_service.settings import shipped_dir; print(shipped_dir('sandbox'))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    request = Path(shipped) / "requests" / "order-select-pgx-cyp2d6-pm-codeine.json"
    result = _run(installed, "explain", str(request), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "1 card(s)" in result.stdout


def test_installed_wheel_lists_its_sandbox_requests_and_names_its_version(
    installed, tmp_path, env
) -> None:
    """From a wheel there is no sandbox/ folder to browse: the command lists what ships, and
    explains a request by its name."""
    listing = _run(installed, "sandbox", "requests", cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "order-select-pgx-cyp2d6-pm-codeine" in listing.stdout
    explained = _run(
        installed, "explain", "order-select-pgx-cyp2d6-pm-codeine", cwd=tmp_path, env=env
    )
    assert explained.returncode == 0 and "1 card(s)" in explained.stdout, explained.stderr
    version = _run(installed, "--version", cwd=tmp_path, env=env)
    assert version.stdout.startswith(f"pgx-cds {_pyproject_version()} (knowledge ")


def _pyproject_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_one_version_everywhere() -> None:
    """Semantic version in pyproject.toml; the package, the image's label and the CHANGELOG's
    latest release say the same."""
    import re

    from cds_service import __version__

    version = _pyproject_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert __version__ == version
    assert f"ARG VERSION={version}\n" in (ROOT / "Dockerfile").read_text()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.MULTILINE)
    assert releases and releases[0] == version


def test_installed_wheel_migrates_and_serves(installed, tmp_path, env) -> None:
    upgrade = _run(installed, "db", "upgrade", cwd=tmp_path, env=env)
    assert upgrade.returncode == 0, upgrade.stderr
    from cds_service.store import schema

    assert f"revision {schema.head()} (newest)" in upgrade.stdout
    port = _free_port()
    server = subprocess.Popen(
        [str(installed / "pgx-cds"), "serve", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                services = requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "the service did not start within 30 s"
                time.sleep(0.2)
        assert services.status_code == 200
        assert {s["hook"] for s in services.json()["services"]} >= {"order-select"}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
