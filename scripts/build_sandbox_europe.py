#!/usr/bin/env python3
"""Regenerate ``sandbox/europe/requests/``: the European example of the sandbox kit.

A site that follows DPWG (``sandbox/europe/site.json``: ``"guidelines": ["dpwg"]``) and whose
EHR codes drugs with WHO ATC or SNOMED CT / UK dm+d, not RxNorm. For every attempt in
``sandbox/europe/index.json`` (a sandbox patient of ``sandbox/patients``, an order coded only
with one ATC or SNOMED CT code, the dose as the prescriber wrote it, the card expected), writes
an ``order-select`` request whose prefetch is what an R4 server answers for the service's
templates (as ``build_sandbox_requests.py`` builds it), and ``expected.json``; the kit's test
(``tests/test_sandbox_europe.py``) checks every request's answer with the site file.

Usage: ``python scripts/build_sandbox_europe.py``
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EUROPE = ROOT / "sandbox" / "europe"
REQUESTS = EUROPE / "requests"

_spec = importlib.util.spec_from_file_location(
    "build_sandbox_requests", ROOT / "scripts" / "build_sandbox_requests.py"
)
assert _spec and _spec.loader
kit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit)


def draft(attempt: dict[str, Any]) -> dict[str, Any]:
    """An R4 draft MedicationRequest coded only with the attempt's ATC or SNOMED CT code
    (an ATC code names no strength: the product's name says it, as a European EHR shows it)."""
    coding: dict[str, Any] = {"system": attempt["system"], "code": attempt["code"]}
    if "display" in attempt:
        coding["display"] = attempt["display"]
    order = kit.order(attempt["patient"], "", "")
    order["medicationCodeableConcept"] = {"coding": [coding]}
    order["dosageInstruction"] = [{"text": attempt["sig"]}]
    return order


def main() -> None:
    index = json.loads((EUROPE / "index.json").read_text())
    REQUESTS.mkdir(parents=True, exist_ok=True)
    for old in REQUESTS.glob("*.json"):
        old.unlink()
    expected: dict[str, Any] = {}
    for attempt in index:
        name = f"order-select-{attempt['patient']}-{attempt['name']}.json"
        body = kit.request("order-select", attempt["patient"], draft(attempt))
        (REQUESTS / name).write_text(json.dumps(body, indent=1) + "\n")
        expected[name] = {
            "patient": attempt["patient"],
            "order": f"{attempt['system']}|{attempt['code']}",
            "indicator": attempt["indicator"],
            "expect": attempt["expect"],
        }
    (REQUESTS / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {len(expected)} requests to {REQUESTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
