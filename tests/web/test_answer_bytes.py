"""The service's answers, byte for byte (uuids masked), for the benchmark's alerting call and
every sandbox request: speed work on the card path (precomputing, caching, encoding) must not
change a single byte of what a caller receives.

The answers were recorded before the card path was made faster (issue 28). A change that is
meant to change an answer (a wording, a new rule) records them again:
``PGX_RECORD_ANSWERS=1 .venv/bin/pytest -q tests/web/test_answer_bytes.py``, and the diff
of ``tests/web/recorded_answers.json`` shows what changed for a reviewer.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).with_name("recorded_answers.json")
REQUESTS = ROOT / "sandbox" / "requests"
EXPECTED = json.loads((REQUESTS / "expected.json").read_text())
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SERVICE = {
    "order-select": "pgx-order-select",
    "order-sign": "pgx-order-sign",
    "medication-prescribe": "pgx-medication-prescribe",
    "patient-view": "pgx-patient-view",
}


def _bench_bodies() -> dict[str, dict]:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from bodies import NORMAL, ULTRARAPID, prefetch_body
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return {
        "bench: alerting (CYP2D6 ultrarapid, 31 results)": prefetch_body(cyp2d6=ULTRARAPID),
        "bench: alerting, 3 draft orders": prefetch_body(orders=3, cyp2d6=ULTRARAPID),
        "bench: quiet (CYP2D6 normal, 31 results)": prefetch_body(cyp2d6=NORMAL),
    }


def _cases() -> dict[str, tuple[dict, str | None]]:
    cases: dict[str, tuple[dict, str | None]] = {
        name: (body, None) for name, body in _bench_bodies().items()
    }
    for name, expected in sorted(EXPECTED.items()):
        cases[f"sandbox: {name}"] = (
            json.loads((REQUESTS / name).read_text()),
            expected.get("as_of"),
        )
    return cases


CASES = _cases()


def masked(raw: bytes) -> str:
    """The answer as sent, its uuids (new on every call) replaced by a placeholder."""
    return UUID.sub(b"<uuid>", raw).decode()


def _answers(client, monkeypatch) -> dict[str, str]:
    out = {}
    for name, (body, as_of) in CASES.items():
        with monkeypatch.context() as m:
            if as_of:  # the card depends on the day (a year-only birth date, ...)
                day = date.fromisoformat(as_of)
                m.setattr("cds_service.clinical.order_details.current_date", lambda d=day: d)
            response = client.post(
                f"/cds-services/{SERVICE[body['hook']]}",
                data=json.dumps(body),
                content_type="application/json",
            )
        assert response.status_code == 200, (name, response.data[:300])
        out[name] = masked(response.data)
    return out


def test_answers_are_byte_identical_to_the_recorded_ones(client, monkeypatch):
    answers = _answers(client, monkeypatch)
    if os.environ.get("PGX_RECORD_ANSWERS"):
        RECORDED.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
        pytest.skip("answers recorded")
    recorded = json.loads(RECORDED.read_text())
    assert set(answers) == set(recorded), "record again: the requests changed"
    for name, answer in answers.items():
        assert answer == recorded[name], name


def test_the_alerting_answer_is_the_critical_card_with_suggestions(client, monkeypatch):
    """What the recording pins is the alerting path: a critical card, one-click suggestions."""
    answer = json.loads(_answers(client, monkeypatch)[next(iter(CASES))])
    [card] = answer["cards"]
    assert card["indicator"] == "critical"
    assert card["suggestions"] and card["detail"]


def test_a_second_call_answers_the_same_bytes(client):
    """Whatever is cached or precomputed after the first call answers what the first did."""
    body = json.dumps(next(iter(CASES.values()))[0])
    first, second = (
        client.post("/cds-services/pgx-order-select", data=body, content_type="application/json")
        for _ in range(2)
    )
    assert masked(first.data) == masked(second.data)
    assert UUID.findall(first.data) != UUID.findall(second.data)  # new uuids each call
