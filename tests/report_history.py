"""A seeded month of cards and feedback (October 2026) and the figures the report must show.

Cards go straight into the card log (with the times they were issued); feedback goes through
``FeedbackStore.store`` as the EHR sends it, retries included.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, update

from cds_service.governance.report import build
from cds_service.store.feedback import FeedbackStore
from cds_service.store.tables import card_log_table, feedback_table, hook_calls_table

SYSTEM = "urn:pgx-pain-cds:override-reason"

# (card, issued at, drug, genes, indicator, shown, patient, feedback)
# feedback: None, "accepted", ("overridden", reason code or None, comment or None), or a list
CARDS: list[tuple[str, str, str, str, str, bool, str, Any]] = [
    ("c1", "2026-10-01T09:00", "codeine", "CYP2D6", "critical", True, "p1",
     ("overridden", "benefit-outweighs-risk", None)),
    ("c2", "2026-10-02T09:00", "codeine", "CYP2D6", "critical", True, "p2",
     ("overridden", "benefit-outweighs-risk", "discussed with the patient")),
    ("c3", "2026-10-06T09:00", "codeine", "CYP2D6", "critical", True, "p3",
     ("overridden", "tolerated-before", "  ")),
    ("c4", "2026-10-07T09:00", "codeine", "CYP2D6", "critical", True, "p4", "accepted"),
    ("c5", "2026-10-08T09:00", "codeine", "CYP2D6", "critical", True, "p5", "accepted"),
    ("c6", "2026-10-13T09:00", "codeine", "CYP2D6", "critical", True, "p1", "accepted"),
    ("c7", "2026-10-14T09:00", "codeine", "CYP2D6", "critical", True, "p6", "accepted"),
    # overridden first, then the suggestion taken: the latest outcome counts
    ("c8", "2026-10-20T09:00", "codeine", "CYP2D6", "critical", True, "p7",
     [("overridden", "no-alternative", None), "accepted"]),
    ("c9", "2026-10-27T09:00", "codeine", "CYP2D6", "critical", True, "p2", None),
    ("c10", "2026-10-31T23:59", "codeine", "CYP2D6", "critical", True, "p3", None),
    ("s1", "2026-10-03T09:00", "codeine", "CYP2D6", "critical", False, "p8", None),
    ("s2", "2026-10-10T09:00", "codeine", "CYP2D6", "critical", False, "p9", None),
    ("s3", "2026-10-17T09:00", "codeine", "CYP2D6", "critical", False, "p8", None),
    ("s4", "2026-10-24T09:00", "codeine", "CYP2D6", "critical", False, "p10", None),
    ("t1", "2026-10-05T09:00", "tramadol", "CYP2D6", "warning", True, "p11",
     ("overridden", "no-alternative", "no other option on the ward")),
    ("t2", "2026-10-09T09:00", "tramadol", "CYP2D6", "warning", True, "p12", "accepted"),
    ("t3", "2026-10-12T09:00", "tramadol", "CYP2D6", "warning", True, "p11",
     ("overridden", None, None)),
    ("t4", "2026-10-19T09:00", "tramadol", "CYP2D6", "warning", True, "p13", None),
    ("t5", "2026-10-26T09:00", "tramadol", "CYP2D6", "warning", True, "p14", None),
    ("t6", "2026-10-30T09:00", "tramadol", "CYP2D6", "warning", True, "p15", None),
    ("k1", "2026-10-01T10:00", "celecoxib", "CYP2C9", "warning", False, "p16", None),
    ("k2", "2026-10-08T10:00", "celecoxib", "CYP2C9", "warning", False, "p16", None),
    ("k3", "2026-10-15T10:00", "celecoxib", "CYP2C9", "warning", False, "p17", None),
    ("k4", "2026-10-22T10:00", "celecoxib", "CYP2C9", "warning", False, "p18", None),
    ("k5", "2026-10-29T10:00", "celecoxib", "CYP2C9", "warning", False, "p19", None),
    # outside the month
    ("x1", "2026-09-30T23:59", "codeine", "CYP2D6", "critical", True, "p1",
     ("overridden", "result-disputed", "old result")),
    ("x2", "2026-11-01T00:00", "codeine", "CYP2D6", "critical", True, "p1", None),
]  # fmt: skip

# The codeine cards are of two recommendations (one row each in the report); the others of one.
RECOMMENDATION = {
    **{c: "codeine-cyp2d6-um" for c in ("c1", "c2", "c3", "c4", "c5", "s1", "s2")},
    **{c: "codeine-cyp2d6-pm" for c in ("c6", "c7", "c8", "c9", "c10", "s3", "s4")},
}
# The hook calls counted (hour, service, drug, calls, orders): the report's denominator.
CALLS = [
    ("2026-10-01T00:00", "pgx-order-select", "", 300, 800),
    ("2026-10-01T00:00", "pgx-order-select", "codeine", 150, 160),
    ("2026-10-01T00:00", "pgx-order-select", "tramadol", 90, 100),
    ("2026-10-01T00:00", "pgx-order-select", "celecoxib", 50, 50),
    ("2026-10-20T13:00", "pgx-order-sign", "", 100, 200),
    ("2026-10-20T13:00", "pgx-order-sign", "codeine", 40, 40),
    ("2026-10-20T13:00", "pgx-patient-view", "", 500, 0),
    ("2026-11-01T00:00", "pgx-order-select", "", 1, 1),  # outside the month
]
EXPECTED_ORDERS = {"codeine": 200, "tramadol": 100, "celecoxib": 50}
# (recommendation): issued, shown, silent, accepted, overridden, no feedback, patients
EXPECTED_RECOMMENDATIONS = {
    "codeine-cyp2d6-um": (7, 5, 2, 2, 3, 0, 7),
    "codeine-cyp2d6-pm": (7, 5, 2, 3, 0, 2, 7),
    "tramadol-cyp2d6-x": (6, 6, 0, 1, 2, 3, 5),
    "celecoxib-cyp2c9-x": (5, 0, 5, 0, 0, 0, 4),
}
# drug/genes or indicator: issued, shown, silent, accepted, overridden, no feedback, patients
EXPECTED_PAIRS = {
    ("celecoxib", "CYP2C9"): (5, 0, 5, 0, 0, 0, 4),
    ("codeine", "CYP2D6"): (14, 10, 4, 5, 3, 2, 10),
    ("tramadol", "CYP2D6"): (6, 6, 0, 1, 2, 3, 5),
}
EXPECTED_INDICATORS = {
    "critical": (14, 10, 4, 5, 3, 2, 10),
    "warning": (11, 6, 5, 1, 2, 3, 9),
}
EXPECTED_TOTAL = (25, 16, 9, 6, 5, 5, 19)
# Wilson 95% intervals: 3 of 8, 2 of 3, 5 of 11 overridden
EXPECTED_CI = {
    ("codeine", "CYP2D6"): (0.375, 0.1368, 0.6943),
    ("tramadol", "CYP2D6"): (2 / 3, 0.2077, 0.9385),
    "all": (5 / 11, 0.2127, 0.7199),
}
EXPECTED_REASONS = {
    "benefit-outweighs-risk": 2,
    "tolerated-before": 1,
    "no-alternative": 1,
    "(no reason given)": 1,
}
EXPECTED_COMMENTS = 2  # c2 and t1; c3's comment is blank
EXPECTED_WEEKLY = {
    "2026-09-28": {"codeine": 3, "celecoxib": 1},
    "2026-10-05": {"codeine": 4, "tramadol": 2, "celecoxib": 1},
    "2026-10-12": {"codeine": 3, "tramadol": 1, "celecoxib": 1},
    "2026-10-19": {"codeine": 2, "tramadol": 1, "celecoxib": 1},
    "2026-10-26": {"codeine": 2, "tramadol": 2, "celecoxib": 1},
}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _item(card: str, spec: Any, when: datetime) -> dict[str, Any]:
    stamp = when.isoformat()
    if spec == "accepted":
        return {
            "card": card,
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": f"{card}-s1"}],
            "outcomeTimestamp": stamp,
        }
    _, code, comment = spec
    item: dict[str, Any] = {"card": card, "outcome": "overridden", "outcomeTimestamp": stamp}
    if code or comment:
        item["overrideReason"] = {}
        if code:
            item["overrideReason"]["reason"] = {"code": code, "system": SYSTEM}
        if comment:
            item["overrideReason"]["userComment"] = comment
    return item


def seed(store: FeedbackStore) -> None:
    log = store.card_log
    rows = []
    items = []
    for card, issued, drug, genes, indicator, shown, patient, feedback in CARDS:
        at = _when(issued)
        rows.append(
            {
                "card_uuid": card,
                "issued_at": at,
                "hook": "order-select",
                "service_id": "pgx-order-select",
                "drug": drug,
                "genes": genes,
                "phenotype": f"{genes} test",
                "recommendation_id": RECOMMENDATION.get(card, f"{drug}-{genes.lower()}-x"),
                "indicator": indicator,
                "knowledge_version": "2026.10.1",
                "shown": shown,
                "patient_hash": log.digest("patient", patient),
                "order_hash": log.digest("order", patient, card),
            }
        )
        specs = feedback if isinstance(feedback, list) else [feedback] if feedback else []
        items += [_item(card, spec, at + timedelta(minutes=2 + i)) for i, spec in enumerate(specs)]
    with store.engine.begin() as conn:
        conn.execute(insert(card_log_table), rows)
        conn.execute(
            insert(hook_calls_table),
            [
                {
                    "hour": _when(hour),
                    "hook": "patient-view" if "patient" in service else "order-select",
                    "service_id": service,
                    "drug": drug,
                    "calls": calls,
                    "orders": orders,
                }
                for hour, service, drug, calls, orders in CALLS
            ],
        )
    store.store("pgx-order-select", {"feedback": items})
    store.store("pgx-order-select", {"feedback": items[:2]})  # the EHR retries: no new rows
    unknown = _item("never-issued", "accepted", _when("2026-10-15T12:00"))
    store.store("pgx-order-select", {"feedback": [unknown]})
    with store.engine.begin() as conn:  # received in October
        conn.execute(
            update(feedback_table)
            .where(feedback_table.c.card_uuid == "never-issued")
            .values(received_at=_when("2026-10-15T12:01"))
        )


OCTOBER = (date(2026, 10, 1), date(2026, 10, 31))


def counts(group) -> tuple[int, ...]:
    # issued, shown, silent, accepted, overridden, no feedback, patients
    return tuple(group.counts())


def assert_report_matches_the_seeded_month(store: FeedbackStore) -> None:
    """Shared with the PostgreSQL integration test."""
    rep = build(store.engine, *OCTOBER)
    assert {(g.drug, g.genes): counts(g) for g in rep.by_drug} == EXPECTED_PAIRS
    assert {g.recommendation: counts(g) for g in rep.by_recommendation} == (
        EXPECTED_RECOMMENDATIONS
    )
    assert {g.indicator: counts(g) for g in rep.by_indicator} == EXPECTED_INDICATORS
    assert counts(rep.total) == EXPECTED_TOTAL
    # the denominator: orders of each drug judged in the month, calls per service
    assert {g.drug: g.orders for g in rep.by_drug} == EXPECTED_ORDERS
    assert {g.recommendation: g.orders for g in rep.by_recommendation}["codeine-cyp2d6-um"] == 200
    assert {g.drug: g.per_1000 for g in rep.by_drug}["codeine"] == pytest.approx(70.0)
    assert dict(rep.calls.by_service) == {
        "pgx-order-select": 300,
        "pgx-order-sign": 100,
        "pgx-patient-view": 500,
    }
    assert (rep.calls.orders, rep.calls.covered_orders) == (1000, 350)
    assert rep.counted_from_start
    groups = {(g.drug, g.genes): g for g in rep.by_drug} | {"all": rep.total}
    for key, (rate, low, high) in EXPECTED_CI.items():
        group = groups[key]
        assert group.override_rate == pytest.approx(rate)
        assert group.ci == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))
    assert groups[("celecoxib", "CYP2C9")].override_rate is None  # silent only: no rate
    assert dict(rep.total.reasons) == EXPECTED_REASONS
    assert rep.total.comments == EXPECTED_COMMENTS
    assert {
        week.isoformat(): dict(per_drug) for week, per_drug in rep.weekly.items()
    } == EXPECTED_WEEKLY
    assert rep.unknown_feedback == 1
    assert rep.knowledge_versions == ["2026.10.1"]
