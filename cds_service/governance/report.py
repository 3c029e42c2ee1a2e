"""``pgx-cds report``: what the cards did over a period, for the committee that tunes them.

From the card log and the feedback, per recommendation (one row each: a CYP2D6 ultrarapid
metabolizer's codeine card is not mixed with a poor metabolizer's), per drug and per
indicator: cards issued, shown, silent (logged only), accepted (a suggestion taken),
overridden (with reasons), no feedback; cards per 1,000 orders of the drug judged (the hook
calls' counts, ``store/call_counts.py``); the override rate with a Wilson 95% confidence
interval; the top override reasons and how many overrides carry a comment. A card's outcome
is its latest feedback item. Rows are labelled from the knowledge (``labels.py``): gene(s) or
marker, the finding, the advice.

The override rate is overridden / (accepted + overridden): of the shown cards the clinician
acted on. Cards with no feedback are counted beside it, not in it (a client may send no
feedback for a card nobody touched). The rate per 1,000 orders counts issued cards (shown and
silent: during a silent go-live, how often a card would fire); patient-view cards are per
1,000 patient-view calls.

Output: a table in the terminal, a CSV file and a stand-alone HTML page with its charts drawn
as inline SVG (``report_page.py``; no plotting library, nothing fetched), written to a file
or to standard output (``--html -``: ``kubectl exec deploy/pgx-cds -- pgx-cds report --html -
> report.html``).

Override reasons are text a caller sent, and the report is read by people with tools that act
on text: the service's own reason codes are shown with the service's own labels (a caller's
``display`` cannot rename them); control characters (terminal escape sequences) and bidi
controls are removed from everything shown (``shown``); a CSV cell that a spreadsheet would
run as a formula is written as text (``csv_cell``, OWASP's CSV injection advice); plot labels
are drawn as plain text, never parsed as math (a ``$`` could otherwise fail the whole page).
``pgx-cds purge`` deletes rows older than the retention (``PGX_CDS_RETENTION_DAYS``).
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Engine

from ..clinical.cards import OVERRIDE_REASONS
from ..knowledge.loader import Knowledge
from ..store.tables import as_utc, card_log_table, feedback_table, hook_calls_table
from .labels import PATIENT_VIEW, CardLabels

Z95 = 1.959963984540054
#: C0 and C1 controls, DEL, and the bidi controls that reorder what a terminal shows.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: What a spreadsheet reads as the start of a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "|", "%")
#: The longest caller text shown for one reason.
MAX_SHOWN = 100


def shown(value: str, limit: int = MAX_SHOWN) -> str:
    """``value`` without control characters, as one line of at most ``limit`` characters."""
    text = _HIDDEN.sub("", value.replace("\n", " ").replace("\t", " "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: control characters removed, and a cell that
    would start a formula (``=HYPERLINK(...)``, ``+``, ``-``, ``@``) prefixed with ``'``.
    Numbers are written as they are."""
    if not isinstance(value, str):
        return value
    text = _HIDDEN.sub("", value)
    return "'" + text if text.startswith(_FORMULA_START) else text


NO_REASON = "(no reason given)"
_REASON_TEXT = dict(OVERRIDE_REASONS)
_INDICATORS = ("critical", "warning", "info")


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for a proportion (None without observations)."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Group:
    """The counts of one recommendation, one drug, one indicator, or all cards."""

    drug: str = ""
    genes: str = ""
    indicator: str = ""
    recommendation: str = ""  # its id (rows by recommendation)
    finding: str = ""
    advice: str = ""
    issued: int = 0
    shown: int = 0
    silent: int = 0
    accepted: int = 0
    overridden: int = 0
    comments: int = 0
    #: the denominator: orders of the drug judged (patient view: its calls; None: unknown)
    orders: int | None = None
    patients: set[str] = field(default_factory=set, repr=False)
    reasons: Counter[str] = field(default_factory=Counter)
    indicators: Counter[str] = field(default_factory=Counter)

    @property
    def no_feedback(self) -> int:
        return self.shown - self.accepted - self.overridden

    @property
    def with_feedback(self) -> int:
        return self.accepted + self.overridden

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.with_feedback if self.with_feedback else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return wilson(self.overridden, self.with_feedback)

    @property
    def per_1000(self) -> float | None:
        """Cards issued (shown and silent) per 1,000 orders judged (patient view: calls)."""
        return 1000 * self.issued / self.orders if self.orders else None

    @property
    def label(self) -> str:
        if self.recommendation:
            genes = f" / {self.genes}" if self.genes else ""
            return f"{self.drug}{genes}: {self.finding}"
        return self.drug or self.indicator or "all cards"

    def counts(self) -> list[int]:
        """In the order of ``COLUMNS``."""
        return [
            self.issued,
            self.shown,
            self.silent,
            self.accepted,
            self.overridden,
            self.no_feedback,
            len(self.patients),
        ]

    def add(self, card: dict[str, Any], outcome: dict[str, Any] | None) -> None:
        self.issued += 1
        self.indicators[card["indicator"]] += 1
        self.patients.add(card["patient_hash"])
        if not card["shown"]:
            self.silent += 1
            return
        self.shown += 1
        if outcome is None:
            return
        if outcome["outcome"] == "accepted":
            self.accepted += 1
            return
        self.overridden += 1
        self.reasons[outcome["override_reason_code"] or NO_REASON] += 1
        if (outcome["override_comment"] or "").strip():
            self.comments += 1


@dataclass
class Calls:
    """What the service judged in the period (``hook_calls``): the report's denominator."""

    by_service: Counter[str] = field(default_factory=Counter)  # service id -> calls
    orders: int = 0  # draft orders judged by the prescribing hooks
    by_drug: Counter[str] = field(default_factory=Counter)  # covered drug -> orders
    first_hour: datetime | None = None  # the earliest hour counted (None: none counted)

    @property
    def calls(self) -> int:
        return sum(self.by_service.values())

    @property
    def covered_orders(self) -> int:
        return sum(self.by_drug.values())

    @property
    def patient_view_calls(self) -> int:
        return sum(n for s, n in self.by_service.items() if s.endswith("patient-view"))


@dataclass
class Report:
    since: date
    until: date  # inclusive
    by_recommendation: list[Group]
    by_drug: list[Group]
    by_indicator: list[Group]
    total: Group
    weekly: dict[date, Counter[str]]  # week's Monday -> cards issued per drug
    reason_names: dict[str, str]
    unknown_feedback: int  # feedback received in the period for cards the log does not know
    knowledge_versions: list[str]
    calls: Calls = field(default_factory=Calls)

    def reason_label(self, code: str) -> str:
        """How a reason is shown: the service's own label for its own codes, else the
        caller's display or the code, without control characters."""
        return shown(_REASON_TEXT.get(code) or self.reason_names.get(code) or code)

    @property
    def counted_from_start(self) -> bool:
        """Were calls counted from the first day of the period (else the rates per 1,000
        orders cover only part of it: a version before calls were counted)?"""
        first = self.calls.first_hour
        return first is not None and first.date() <= self.since


def _calls(engine: Engine, start: datetime, end: datetime) -> Calls:
    h = hook_calls_table.c
    query = (
        select(
            h.service_id, h.hook, h.drug, func.sum(h.calls), func.sum(h.orders), func.min(h.hour)
        )
        .where(h.hour >= start, h.hour < end)
        .group_by(h.service_id, h.hook, h.drug)
    )
    found = Calls()
    with engine.connect() as conn:
        for service, hook, drug, calls, orders, first in conn.execute(query):
            first = as_utc(first)
            found.first_hour = min(found.first_hour or first, first)
            if drug:
                found.by_drug[drug] += int(orders or 0)
                continue
            found.by_service[service] += int(calls or 0)
            if hook != "patient-view":
                found.orders += int(orders or 0)
    return found


def build(engine: Engine, since: date, until: date, knowledge: Knowledge | None = None) -> Report:
    """Count the cards issued from ``since`` to ``until`` (both days included, UTC); rows
    labelled from ``knowledge`` where it knows their recommendation."""
    labels = CardLabels(knowledge)
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
    c, f = card_log_table.c, feedback_table.c
    query = (
        select(
            c.card_uuid,
            c.issued_at,
            c.drug,
            c.genes,
            c.phenotype,
            c.recommendation_id,
            c.indicator,
            c.shown,
            c.patient_hash,
            c.knowledge_version,
            f.id.label("feedback_id"),
            f.outcome,
            f.outcome_timestamp,
            f.override_reason_code,
            f.override_reason_display,
            f.override_comment,
        )
        .select_from(card_log_table.outerjoin(feedback_table, f.card_uuid == c.card_uuid))
        .where(c.issued_at >= start, c.issued_at < end)
        .order_by(c.id)
    )
    unknown_query = select(f.id).where(
        and_(f.card_known.is_(False), f.received_at >= start, f.received_at < end)
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
        unknown = len(conn.execute(unknown_query).all())
    calls = _calls(engine, start, end)

    cards: dict[str, dict[str, Any]] = {}
    latest: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for row in rows:
        cards.setdefault(row["card_uuid"], row)
        if row["feedback_id"] is None:
            continue
        key = (as_utc(row["outcome_timestamp"]), row["feedback_id"])
        mine = latest.get(row["card_uuid"])
        if mine is None or key > (as_utc(mine["outcome_timestamp"]), mine["feedback_id"]):
            latest[row["card_uuid"]] = row
        if row["override_reason_code"] and row["override_reason_display"]:
            names.setdefault(row["override_reason_code"], row["override_reason_display"])

    recommendations: dict[str, Group] = {}
    drugs: dict[str, Group] = {}
    levels: dict[str, Group] = {}
    total = Group()
    weekly: dict[date, Counter[str]] = {}
    versions: set[str] = set()
    for uuid, card in cards.items():
        outcome = latest.get(uuid)
        label = labels.label(
            card["recommendation_id"], card["drug"], card["genes"], card["phenotype"]
        )
        rec = recommendations.get(card["recommendation_id"])
        if rec is None:
            rec = recommendations[card["recommendation_id"]] = Group(
                drug=label.drug,
                genes=label.genes,
                recommendation=card["recommendation_id"],
                finding=label.finding,
                advice=label.advice,
            )
        drug = drugs.setdefault(card["drug"], Group(drug=card["drug"]))
        level = levels.setdefault(card["indicator"], Group(indicator=card["indicator"]))
        for group in (rec, drug, level, total):
            group.add(card, outcome)
        day = as_utc(card["issued_at"]).date()
        weekly.setdefault(day - timedelta(days=day.weekday()), Counter())[card["drug"]] += 1
        versions.add(card["knowledge_version"])
    counted = calls.first_hour is not None
    for group in [*recommendations.values(), *drugs.values()]:
        if counted:
            group.orders = (
                calls.patient_view_calls
                if group.drug == PATIENT_VIEW
                else calls.by_drug.get(group.drug, 0)
            )
    for drug in drugs.values():  # the genes of the drug's rows
        drug.genes = ", ".join(
            sorted({r.genes for r in recommendations.values() if r.drug == drug.drug and r.genes})
        )
    order = {name: i for i, name in enumerate(_INDICATORS)}
    return Report(
        since=since,
        until=until,
        by_recommendation=sorted(
            recommendations.values(), key=lambda g: (g.drug, g.genes, -g.issued, g.finding)
        ),
        by_drug=sorted(drugs.values(), key=lambda g: g.drug),
        by_indicator=sorted(levels.values(), key=lambda g: order.get(g.indicator, 9)),
        total=total,
        weekly=dict(sorted(weekly.items())),
        reason_names=names,
        unknown_feedback=unknown,
        knowledge_versions=sorted(versions),
        calls=calls,
    )


# -- text and CSV ---------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def rate_text(group: Group) -> str:
    ci = group.ci
    if ci is None:
        return "-"
    return f"{_pct(group.override_rate)} ({_pct(ci[0])}–{_pct(ci[1])})"


def per_1000_text(group: Group) -> str:
    value = group.per_1000
    return "-" if value is None else f"{value:.1f}"


COLUMNS = ("issued", "shown", "silent", "accepted", "overridden", "no feedback", "patients")


def calls_text(report: Report) -> str:
    """The denominator in a sentence."""
    calls = report.calls
    if calls.first_hour is None:
        return (
            "Hook calls: none counted in this period (no calls, or a version of the service "
            "before calls were counted): no rates per 1,000 orders."
        )
    services = ", ".join(f"{s} {n:,}" for s, n in sorted(calls.by_service.items()))
    since = (
        ""
        if report.counted_from_start
        else f" (counted from {calls.first_hour:%Y-%m-%d %H:00} UTC only)"
    )
    return (
        f"Hook calls: {calls.calls:,} ({services}); orders judged: {calls.orders:,}, "
        f"{calls.covered_orders:,} of them for a drug the knowledge covers{since}."
    )


def text(report: Report) -> str:
    lines = [
        f"Cards issued {report.since} to {report.until} (UTC), knowledge "
        + (", ".join(report.knowledge_versions) or "-"),
        calls_text(report),
        "Override rate: overridden / (accepted + overridden), Wilson 95% CI. Per 1,000: cards "
        "issued per 1,000 orders of the drug judged (patient view: per 1,000 calls).",
        "",
    ]
    if not report.total.issued:
        lines.append("No cards were issued in this period.\n")
    width = 44
    head = (
        f"{'':<{width}}"
        + "".join(f"{c:>12}" for c in COLUMNS)
        + f"{'per 1,000':>11}  override rate (95% CI)"
    )
    for title, groups in (
        ("by recommendation", report.by_recommendation),
        ("by drug", report.by_drug),
        ("by indicator", report.by_indicator),
    ):
        lines += [title + head[len(title) :], "-" * len(head)]
        for g in [*groups, report.total]:
            label = shown(g.label, width - 1) if g is not report.total else "all cards"
            lines.append(
                f"{label:<{width}}"
                + "".join(f"{n:>12}" for n in g.counts())
                + f"{per_1000_text(g) if g is not report.total else '':>11}  {rate_text(g)}"
            )
        lines.append("")
    lines.append("top override reasons")
    if not report.total.reasons:
        lines.append("  (no overrides)")
    for code, count in report.total.reasons.most_common(10):
        lines.append(f"  {count:>5}  {report.reason_label(code)}")
    lines += [
        "",
        f"overrides with a comment: {report.total.comments}",
        f"feedback for cards the log does not know: {report.unknown_feedback}",
    ]
    return "\n".join(lines)


CSV_HEADER = [
    "by",
    "recommendation",
    "drug",
    "genes",
    "finding",
    "advice",
    "indicator",
    "issued",
    "shown",
    "silent",
    "accepted",
    "overridden",
    "no_feedback",
    "patients",
    "orders",
    "per_1000_orders",
    "override_rate",
    "ci_low",
    "ci_high",
    "comments",
    "top_reasons",
]


def write_csv(report: Report, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(CSV_HEADER)
        for by, groups in (
            ("recommendation", report.by_recommendation),
            ("drug", report.by_drug),
            ("indicator", report.by_indicator),
            ("all", [report.total]),
        ):
            for g in groups:
                ci = g.ci
                rate = g.override_rate
                per_1000 = g.per_1000
                indicator = g.indicator or "/".join(g.indicators) if by != "all" else ""
                row = [
                    by,
                    g.recommendation,
                    g.drug,
                    g.genes,
                    g.finding,
                    g.advice,
                    indicator,
                    *g.counts(),
                    "" if g.orders is None else g.orders,
                    "" if per_1000 is None else f"{per_1000:.2f}",
                    "" if rate is None else f"{rate:.4f}",
                    "" if ci is None else f"{ci[0]:.4f}",
                    "" if ci is None else f"{ci[1]:.4f}",
                    g.comments,
                    "; ".join(f"{shown(code)} ({n})" for code, n in g.reasons.most_common(3)),
                ]
                out.writerow([csv_cell(cell) for cell in row])
