"""The documents' pointers lead somewhere: every relative link names a file that exists and,
with an anchor, a heading in it; every section a text sends the reader to exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "knowledge" / "README.md",
    ROOT / "sandbox" / "README.md",
]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _headings(path: Path) -> set[str]:
    return set(re.findall(r"^#+ (.+?)\s*$", path.read_text(encoding="utf-8"), re.MULTILINE))


def test_every_relative_link_leads_to_a_file_and_heading():
    for doc in DOCUMENTS:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path_part, _, anchor = target.partition("#")
            path = (doc.parent / path_part).resolve() if path_part else doc
            where = f"{doc.relative_to(ROOT)} links to {target}"
            assert path.exists(), f"{where}: no such file"
            if anchor:
                assert anchor in {_anchor(h) for h in _headings(path)}, f"{where}: no such heading"


def test_sections_the_documents_point_to_exist():
    known: set[str] = set()
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        known |= _headings(doc)
        known |= set(re.findall(r"^\*\*(.+?)\.\*\*", text, re.MULTILINE))  # "**Faults.** ..."
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        for name in re.findall(r'see (?:[\w./]+, )?"([^"]+)"', text):
            assert name in known, f'{doc.relative_to(ROOT)} points to "{name}": no such section'


def test_the_readme_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert "pgx-cds serve" in block[0] and "start the service" in block[0]
    assert "pytest" in block[1] and "run the tests" in block[1]
