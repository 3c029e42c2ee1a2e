"""``pgx-cds report``: what the cards did over a period, for the committee that tunes them.

From the card log and the feedback, per drug–gene pair and per indicator: cards issued, shown,
silent (logged only), accepted (a suggestion taken), overridden (with reasons), no feedback;
the override rate with a Wilson 95% confidence interval; the top override reasons and how
many overrides carry a comment. A card's outcome is its latest feedback item.

The override rate is overridden / (accepted + overridden): of the shown cards the clinician
acted on. Cards with no feedback are counted beside it, not in it (a client may send no
feedback for a card nobody touched).

Output: a table in the terminal, a CSV file and a stand-alone HTML page with plots
(matplotlib, Agg, PNGs embedded as data URIs; ``pip install '.[report]'``).

Override reasons are text a caller sent, and the report is read by people with tools that act
on text: the service's own reason codes are shown with the service's own labels (a caller's
``display`` cannot rename them); control characters (terminal escape sequences) and bidi
controls are removed from everything shown (``shown``); a CSV cell that a spreadsheet would
run as a formula is written as text (``csv_cell``, OWASP's CSV injection advice); plot labels
are drawn as plain text, never parsed as math (a ``$`` could otherwise fail the whole page).
``pgx-cds purge`` deletes rows older than the retention (``PGX_CDS_RETENTION_DAYS``).
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..clinical.cards import OVERRIDE_REASONS
from ..settings import Settings
from ..store import schema
from ..store.card_log import purge
from ..store.feedback import FeedbackStore
from ..store.tables import as_utc, card_log_table, feedback_table

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
    """The counts of one drug–gene pair, one indicator, or all cards."""

    drug: str = ""
    genes: str = ""
    indicator: str = ""
    issued: int = 0
    shown: int = 0
    silent: int = 0
    accepted: int = 0
    overridden: int = 0
    comments: int = 0
    patients: set[str] = field(default_factory=set, repr=False)
    reasons: Counter[str] = field(default_factory=Counter)

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
    def label(self) -> str:
        return f"{self.drug} / {self.genes}" if self.drug else self.indicator or "all cards"

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
class Report:
    since: date
    until: date  # inclusive
    by_pair: list[Group]
    by_indicator: list[Group]
    total: Group
    weekly: dict[date, Counter[str]]  # week's Monday -> cards issued per drug
    reason_names: dict[str, str]
    unknown_feedback: int  # feedback received in the period for cards the log does not know
    knowledge_versions: list[str]

    def reason_label(self, code: str) -> str:
        """How a reason is shown: the service's own label for its own codes, else the
        caller's display or the code, without control characters."""
        return shown(_REASON_TEXT.get(code) or self.reason_names.get(code) or code)


def build(engine: Engine, since: date, until: date) -> Report:
    """Count the cards issued from ``since`` to ``until`` (both days included, UTC)."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
    c, f = card_log_table.c, feedback_table.c
    query = (
        select(
            c.card_uuid,
            c.issued_at,
            c.drug,
            c.genes,
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

    pairs: dict[tuple[str, str], Group] = {}
    levels: dict[str, Group] = {}
    total = Group()
    weekly: dict[date, Counter[str]] = {}
    versions: set[str] = set()
    for uuid, card in cards.items():
        outcome = latest.get(uuid)
        pair = pairs.setdefault(
            (card["drug"], card["genes"]), Group(drug=card["drug"], genes=card["genes"])
        )
        level = levels.setdefault(card["indicator"], Group(indicator=card["indicator"]))
        for group in (pair, level, total):
            group.add(card, outcome)
        day = as_utc(card["issued_at"]).date()
        weekly.setdefault(day - timedelta(days=day.weekday()), Counter())[card["drug"]] += 1
        versions.add(card["knowledge_version"])
    order = {name: i for i, name in enumerate(_INDICATORS)}
    return Report(
        since=since,
        until=until,
        by_pair=sorted(pairs.values(), key=lambda g: (g.drug, g.genes)),
        by_indicator=sorted(levels.values(), key=lambda g: order.get(g.indicator, 9)),
        total=total,
        weekly=dict(sorted(weekly.items())),
        reason_names=names,
        unknown_feedback=unknown,
        knowledge_versions=sorted(versions),
    )


# -- text and CSV ---------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def rate_text(group: Group) -> str:
    ci = group.ci
    if ci is None:
        return "-"
    return f"{_pct(group.override_rate)} ({_pct(ci[0])}–{_pct(ci[1])})"


COLUMNS = ("issued", "shown", "silent", "accepted", "overridden", "no feedback", "patients")


def text(report: Report) -> str:
    lines = [
        f"Cards issued {report.since} to {report.until} (UTC), knowledge "
        + (", ".join(report.knowledge_versions) or "-"),
        "Override rate: overridden / (accepted + overridden), Wilson 95% CI.",
        "",
    ]
    if not report.total.issued:
        lines.append("No cards were issued in this period.\n")
    head = f"{'':<34}" + "".join(f"{c:>12}" for c in COLUMNS) + "  override rate (95% CI)"
    for title, groups in (
        ("drug / gene(s)", report.by_pair),
        ("indicator", report.by_indicator),
    ):
        lines += [title + head[len(title) :], "-" * len(head)]
        for g in [*groups, report.total]:
            label = shown(g.label) if g is not report.total else "all cards"
            lines.append(
                f"{label[:33]:<34}" + "".join(f"{n:>12}" for n in g.counts()) + f"  {rate_text(g)}"
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
    "drug",
    "genes",
    "indicator",
    "issued",
    "shown",
    "silent",
    "accepted",
    "overridden",
    "no_feedback",
    "patients",
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
            ("drug-gene", report.by_pair),
            ("indicator", report.by_indicator),
            ("all", [report.total]),
        ):
            for g in groups:
                ci = g.ci
                rate = g.override_rate
                row = [
                    by,
                    g.drug,
                    g.genes,
                    g.indicator,
                    *g.counts()[:6],
                    len(g.patients),
                    "" if rate is None else f"{rate:.4f}",
                    "" if ci is None else f"{ci[0]:.4f}",
                    "" if ci is None else f"{ci[1]:.4f}",
                    g.comments,
                    "; ".join(f"{shown(code)} ({n})" for code, n in g.reasons.most_common(3)),
                ]
                out.writerow([csv_cell(cell) for cell in row])


# -- HTML with plots ------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(report: Report) -> dict[str, str]:
    """The three plots as PNG data URIs (matplotlib's Agg canvas; no display needed)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise RuntimeError(
            "the HTML report needs matplotlib: pip install 'pgx-pain-cds[report]'"
        ) from exc

    out = {}
    # Cards per week by drug (stacked).
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    weeks = list(report.weekly)
    drugs = sorted({d for counts in report.weekly.values() for d in counts})
    bottom = [0] * len(weeks)
    for drug in drugs:
        heights = [report.weekly[w][drug] for w in weeks]
        ax.bar([w.isoformat() for w in weeks], heights, bottom=bottom, label=shown(drug))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    if drugs:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.text(0.5, 0.5, "no cards in this period", ha="center", transform=ax.transAxes)
    ax.set_title("Cards issued per week (shown and silent), by drug")
    ax.set_xlabel("week starting (Monday)")
    ax.set_ylabel("cards")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    out["weekly"] = _png(fig)

    # Override rate by drug–gene pair, with the Wilson interval.
    rated = [g for g in report.by_pair if g.with_feedback]
    fig = Figure(figsize=(8, 0.5 * max(len(rated), 2) + 1.2))
    ax = fig.add_subplot()
    if rated:
        ys = list(range(len(rated)))[::-1]
        rates = [100 * (g.override_rate or 0) for g in rated]
        cis = [g.ci or (0.0, 0.0) for g in rated]
        lower = [r - 100 * lo for r, (lo, _) in zip(rates, cis, strict=True)]
        upper = [100 * hi - r for r, (_, hi) in zip(rates, cis, strict=True)]
        ax.errorbar(rates, ys, xerr=[lower, upper], fmt="o", capsize=4, color="#b03a2e")
        ax.set_yticks(
            ys,
            [f"{shown(g.label)}  (n={g.with_feedback})" for g in rated],
            fontsize=8,
            parse_math=False,
        )
        ax.set_ylim(-0.7, len(rated) - 0.3)
    else:
        ax.text(0.5, 0.5, "no feedback in this period", ha="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlim(0, 100)
    ax.set_xlabel("override rate, % of cards with feedback (95% Wilson CI)")
    ax.set_title("Override rate by drug–gene pair")
    ax.grid(axis="x", alpha=0.3)
    out["override_rate"] = _png(fig)

    # Override reasons.
    reasons = report.total.reasons.most_common(10)[::-1]
    fig = Figure(figsize=(8, 0.45 * max(len(reasons), 2) + 1.2))
    ax = fig.add_subplot()
    if reasons:
        # positions, then the labels as plain text: a category axis would parse "$...$"
        ax.barh(range(len(reasons)), [n for _, n in reasons])
        ax.set_yticks(
            range(len(reasons)),
            [report.reason_label(c) for c, _ in reasons],
            fontsize=8,
            parse_math=False,
        )
    else:
        ax.text(0.5, 0.5, "no overrides in this period", ha="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel("overridden cards")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Override reasons")
    out["reasons"] = _png(fig)
    return out


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:80em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child,td.reasons,th.reasons{text-align:left}
td:first-child,td.rate{white-space:nowrap}
td.reasons{min-width:14em}
tr.total td{font-weight:bold;background:#f4f4f4}
img{max-width:100%;display:block;margin:1em 0}
.note{color:#555;font-size:.9em}
"""


def _table(report: Report, groups: list[Group], first: str) -> str:
    total = report.total
    head = "".join(f"<th>{html.escape(c)}</th>" for c in (first, *COLUMNS))
    head += '<th>override rate (95% CI)</th><th>comments</th><th class="reasons">top reasons</th>'
    body = []
    for g in [*groups, total]:
        cls = ' class="total"' if g is total else ""
        label = "all cards" if g is total else g.label
        cells = "".join(f"<td>{n}</td>" for n in g.counts())
        reasons = "; ".join(
            f"{report.reason_label(code)} ({n})" for code, n in g.reasons.most_common(3)
        )
        body.append(
            f"<tr{cls}><td>{html.escape(label)}</td>{cells}"
            f'<td class="rate">{html.escape(rate_text(g))}</td><td>{g.comments}</td>'
            f'<td class="reasons">{html.escape(reasons)}</td></tr>'
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_page(report: Report, generated: datetime | None = None) -> str:
    images = plots(report)
    generated = generated or datetime.now(UTC)
    reasons = "".join(
        f"<tr><td>{html.escape(report.reason_label(code))}</td><td>{n}</td></tr>"
        for code, n in report.total.reasons.most_common(10)
    )
    period = f"{report.since} to {report.until}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>PGx Pain CDS: cards and overrides, {html.escape(period)}</title>
<style>{_STYLE}</style></head><body>
<h1>PGx Pain CDS: cards and overrides</h1>
<p>Cards issued <b>{html.escape(period)}</b> (UTC days, both included). Knowledge version(s):
{html.escape(", ".join(report.knowledge_versions) or "-")}. Generated
{generated:%Y-%m-%d %H:%M} UTC.</p>
<p class="note"><b>Silent</b> cards were evaluated and logged but not shown (site configuration):
they show how often a card would fire. <b>Accepted</b>: the clinician took a suggestion.
<b>Override rate</b>: overridden / (accepted + overridden), with a Wilson 95% confidence
interval; cards with no feedback are counted beside it, not in it. <b>Patients</b>: distinct
patients (counted by a keyed hash; the log holds no patient identifiers).</p>
<h2>By drug and gene</h2>
{_table(report, report.by_pair, "drug / gene(s)")}
<h2>By indicator</h2>
{_table(report, report.by_indicator, "indicator")}
<h2>Cards per week</h2>
<img alt="Cards issued per week by drug" src="{images["weekly"]}">
<h2>Override rates</h2>
<img alt="Override rate by drug-gene pair with 95% confidence intervals"
 src="{images["override_rate"]}">
<h2>Override reasons</h2>
<table><thead><tr><th>reason</th><th>overridden cards</th></tr></thead>
<tbody>{reasons or '<tr><td colspan="2">no overrides</td></tr>'}</tbody></table>
<img alt="Override reasons" src="{images["reasons"]}">
<p>Overrides with a comment: {report.total.comments}. Feedback received for cards the log
does not know: {report.unknown_feedback}.</p>
</body></html>
"""


# -- the commands ---------------------------------------------------------------------------


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def add_commands(sub: Any) -> None:
    report = sub.add_parser("report", help="cards, feedback and override rates over a period")
    report.add_argument("--since", type=_day, help="first day, YYYY-MM-DD (default: 30 days ago)")
    report.add_argument("--until", type=_day, help="last day, included (default: today, UTC)")
    report.add_argument("--csv", type=Path, help="also write the figures to this CSV file")
    report.add_argument("--html", type=Path, help="also write an HTML report with plots")
    purge_cmd = sub.add_parser(
        "purge", help="delete card log and feedback rows older than the retention"
    )
    purge_cmd.add_argument(
        "--days", type=int, help="keep this many days (default: PGX_CDS_RETENTION_DAYS)"
    )


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        engine = FeedbackStore(settings.database_url).engine
        schema.prepare(engine, settings.migrate_on_start)  # as the service does at start
    except schema.SchemaError as exc:  # the schema is older or newer than this version's
        print(f"pgx-cds: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"pgx-cds: cannot open the database: {type(exc).__name__}", file=sys.stderr)
        return 1
    try:
        if args.command == "purge":
            days = args.days if args.days is not None else settings.retention_days
            return _purge(engine, days)
        until = args.until or datetime.now(UTC).date()
        since = args.since or until - timedelta(days=29)
        if since > until:
            print("pgx-cds: --since is after --until", file=sys.stderr)
            return 2
        try:
            report = build(engine, since, until)
        except SQLAlchemyError as exc:
            print(f"pgx-cds: cannot read the database: {type(exc).__name__}", file=sys.stderr)
            return 1
        print(text(report))
        if args.csv:
            write_csv(report, args.csv)
            print(f"\nCSV written to {args.csv}")
        if args.html:
            try:
                page = html_page(report)
            except RuntimeError as exc:
                print(f"pgx-cds: {exc}", file=sys.stderr)
                return 1
            args.html.write_text(page, encoding="utf-8")
            print(f"HTML report written to {args.html}")
        return 0
    finally:
        engine.dispose()


def _purge(engine: Engine, days: int | None) -> int:
    if not days or days < 1:
        print("pgx-cds: give --days N (N >= 1) or set PGX_CDS_RETENTION_DAYS", file=sys.stderr)
        return 2
    try:
        cards, items = purge(engine, days)
    except SQLAlchemyError as exc:
        print(f"pgx-cds: cannot purge: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"deleted {cards} card log row(s) and {items} feedback item(s) older than {days} days")
    return 0
