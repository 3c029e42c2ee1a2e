"""The READMEs' pointers lead somewhere: a section they send the reader to exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_sections_the_readmes_point_to_exist():
    text = README.read_text(encoding="utf-8")
    headings = re.findall(r"^#+ (.+?)\s*$", text, re.MULTILINE)
    labels = re.findall(r"^\*\*(.+?)\.\*\*", text, re.MULTILINE)  # "**Database faults.** ..."
    known = set(headings) | set(labels)
    for path in (README, ROOT / "knowledge" / "README.md"):
        named = re.findall(r'see (?:the main README, )?"([^"]+)"', path.read_text(encoding="utf-8"))
        for name in named:
            assert name in known, f'{path.relative_to(ROOT)} points to "{name}": no such section'
    anchors = {_anchor(h) for h in headings}
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors, f"README.md links to #{anchor}: no such heading"
