"""The shell blocks of the README and docs/ work as written.

Every ``sh`` block carries a tag just above it: ``<!-- ci: run ... -->`` (this test runs it,
with bash, in a copy of the repository whose ``.venv`` is the test run's own) or
``<!-- ci: skip (why) -->`` (it needs what CI has not: a container engine, an EHR). A block
without a tag fails the test, so a new command cannot rot unseen. Blocks that call the service
at ``127.0.0.1:8080`` run against a ``pgx-cds serve`` this test starts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serving import ROOT, Service, clean_env
from serving import start_service as start

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"^(?P<indent> *)<!-- ci: (?P<verdict>run|skip)(?: \((?P<why>[^)]*)\))? -->\n"
    r"(?P=indent)```sh\n(?P<body>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)
FENCE = re.compile(r"^ *```sh$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    verdict: str
    why: str
    text: str

    def __str__(self) -> str:
        return f"{self.document}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            indent = m.group("indent")
            body = "".join(line.removeprefix(indent) for line in m.group("body").splitlines(True))
            line = text[: m.start()].count("\n") + 2
            name = str(doc.relative_to(ROOT))
            found.append(Block(name, line, m.group("verdict"), m.group("why") or "", body))
    return found


def test_every_shell_block_says_whether_ci_runs_it():
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        fences = [text[: m.start()].count("\n") + 1 for m in FENCE.finditer(text)]
        tagged = {b.line for b in blocks() if b.document == str(doc.relative_to(ROOT))}
        untagged = [f for f in fences if f not in tagged]
        assert not untagged, f"{doc.name}: sh blocks at lines {untagged} have no <!-- ci: --> tag"
    skipped = [b for b in blocks() if b.verdict == "skip"]
    assert all(b.why for b in skipped), "a skipped block says why"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's tracked files, its .venv the test run's own."""
    copy = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(Path(sys.prefix))
    return copy


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    db = tmp_path_factory.mktemp("db") / "feedback.sqlite3"
    running = start(clean_env(PGX_CDS_DATABASE_URL=f"sqlite:///{db}"), "--workers", "1")
    yield running
    running.stop()


def _run(block: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


RUN = [b for b in blocks() if b.verdict == "run"]


@pytest.mark.parametrize("block", RUN, ids=str)
def test_documented_commands_work_as_written(block, workspace, service, tmp_path):
    env = clean_env()
    text = block.text.replace("127.0.0.1:8080", f"127.0.0.1:{service.port}")
    if "pip install" in text:
        # the reader's own environment: a fresh venv whose pip and python come first
        own = tmp_path / "venv"
        venv.create(own, with_pip=True)
        env["PATH"] = f"{own / 'bin'}:{env['PATH']}"
    done = _run(Block(block.document, block.line, block.verdict, block.why, text), workspace, env)
    assert done.returncode == 0, f"{block} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    if "pgx-order-select" in text:
        assert '"indicator": "critical"' in done.stdout
    if "pip install" in text:
        version = subprocess.run(
            [str(tmp_path / "venv" / "bin" / "pgx-cds"), "--version"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert version.stdout.startswith("pgx-cds ")
