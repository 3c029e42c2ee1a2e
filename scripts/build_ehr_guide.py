"""Rewrite the generated parts of docs/ehr-registration.md from the service's own code: the
prefetch keys and queries (``fhir.queries.prefetch_text``) an EHR analyst enters by hand.
tests/test_ehr_guide.py fails when the guide and the code disagree; run this to fix it."""

from __future__ import annotations

import re
from pathlib import Path

from cds_service.fhir.queries import prefetch_text
from cds_service.knowledge.loader import Knowledge
from cds_service.settings import default_knowledge_dir

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "ehr-registration.md"
BLOCK = re.compile(
    r"(<!-- generated: prefetch [^>]*-->\n```text\n)(.*?)(```\n<!-- end generated -->)", re.DOTALL
)


def main() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    generated = prefetch_text(Knowledge(default_knowledge_dir()))
    new, count = BLOCK.subn(lambda m: m.group(1) + generated + m.group(3), text)
    if count != 1:
        raise SystemExit(f"{GUIDE}: expected one generated prefetch block, found {count}")
    GUIDE.write_text(new, encoding="utf-8")
    print(f"{GUIDE}: prefetch block {'unchanged' if new == text else 'updated'}")


if __name__ == "__main__":
    main()
