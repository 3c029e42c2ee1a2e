"""The committee's report as one stand-alone HTML page (``pgx-cds report --html``).

Tables a P&T committee reads (a row per recommendation, per drug, per indicator; the calls
and orders the cards are counted against) and three charts drawn as inline SVG by this module:
no plotting library, no font cache to write, nothing fetched, and text in them is escaped
like the rest of the page (caller text is never parsed as markup or math). The page fits a
1,400-pixel-wide window without scrolling sideways (``tests/governance/test_report_page.py``
measures it in a headless browser): tables have fixed column widths and wrap their text.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from .report import COLUMNS, Group, Report, calls_text, per_1000_text, rate_text, shown

#: Colours of the drugs in the weekly chart (colour-blind-safe: Okabe-Ito, then Tol's muted).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#999933",
    "#AA4499",
)
_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1360px;color:#222;
padding:0 16px;font-size:14px;line-height:1.35}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;width:100%;table-layout:fixed;font-size:13px}
th,td{border:1px solid #ccc;padding:.25em .4em;text-align:right;overflow-wrap:break-word;
vertical-align:top}
th{background:#f0f0f0;font-weight:600}
th.t,td.t{text-align:left}
tr.total td{font-weight:bold;background:#f6f6f6}
.summary{display:flex;flex-wrap:wrap;gap:.6em;margin:1em 0;padding:0}
.summary div{border:1px solid #ccc;border-radius:4px;padding:.5em .8em;min-width:11em}
.summary b{display:block;font-size:1.4em}
.note{color:#555;font-size:.92em;max-width:100%}
svg{display:block;width:100%;height:auto;margin:.6em 0;font-family:system-ui,sans-serif}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


#: Where a column's heading may break (a soft hyphen): narrow columns, whole words.
_HEAD_BREAKS = {
    "accepted": "ac\u00adcepted",
    "overridden": "over\u00adridden",
    "indicator": "indi\u00adcator",
    "patients": "pa\u00adtients",
    "comments": "com\u00adments",
    "no feedback": "no feed\u00adback",
}


_SLASH = "/\u200b"  # a slash a line may break after


def _head(name: str) -> str:
    return _e(name).replace(name, _HEAD_BREAKS[name]) if name in _HEAD_BREAKS else _e(name)


def _cols(widths: list[float]) -> str:
    """A colgroup of fixed widths (per cent of the table)."""
    return "<colgroup>" + "".join(f'<col style="width:{w:g}%">' for w in widths) + "</colgroup>"


def _numbers(g: Group, total: bool) -> str:
    cells = "".join(f"<td>{n:,}</td>" for n in g.counts())
    orders = "" if g.orders is None else f"{g.orders:,}"
    per = "" if total else per_1000_text(g)
    return cells + f"<td>{orders}</td><td>{per}</td><td>{_e(rate_text(g))}</td>"


_NUMBER_HEADS = (*COLUMNS, "orders judged", "per 1,000 orders", "override rate (95% CI)")


def _reasons(report: Report, g: Group) -> str:
    return "; ".join(f"{report.reason_label(code)} ({n})" for code, n in g.reasons.most_common(3))


def _recommendation_table(report: Report) -> str:
    """A row per recommendation: drug, gene(s), finding, advice, then the numbers."""
    heads = ("drug", "gene(s)", "finding", "advice", "indicator", *_NUMBER_HEADS, "top reasons")
    widths = [9, 7.5, 11, 7.5, 5.5, 4.5, 4.5, 4, 5, 5, 5.5, 5, 5, 4.5, 7.5, 9]
    head = "".join(
        f'<th class="{"t" if i < 5 or i == len(heads) - 1 else ""}">{_head(h)}</th>'
        for i, h in enumerate(heads)
    )
    rows = []
    for g in [*report.by_recommendation, report.total]:
        total = g is report.total
        first = (
            '<td class="t" colspan="5">all cards</td>'
            if total
            else "".join(
                # (a line may break after "/" in CYP2D6/CYP2C19)
                f'<td class="t">{_e(shown(v, 120)).replace("/", _SLASH)}</td>'
                for v in (g.drug, g.genes or "–", g.finding, g.advice, "/".join(g.indicators))
            )
        )
        cls = ' class="total"' if total else ""
        rows.append(
            f'<tr{cls}>{first}{_numbers(g, total)}<td class="t">{_e(_reasons(report, g))}</td></tr>'
        )
    return (
        f"<table>{_cols(widths)}<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _summary_table(report: Report, groups: list[Group], first: str) -> str:
    heads = (first, *_NUMBER_HEADS, "comments", "top reasons")
    widths = [18, 6, 6, 6, 6, 6.5, 6, 6, 6.5, 6, 8.5, 5.5, 13.5]
    head = "".join(
        f'<th class="{"t" if i in (0, len(heads) - 1) else ""}">{_head(h)}</th>'
        for i, h in enumerate(heads)
    )
    rows = []
    for g in [*groups, report.total]:
        total = g is report.total
        label = "all cards" if total else g.label + (f" ({g.genes})" if g.drug and g.genes else "")
        cls = ' class="total"' if total else ""
        rows.append(
            f'<tr{cls}><td class="t">{_e(shown(label, 120))}'
            f"</td>{_numbers(g, total or not g.drug)}<td>{g.comments}</td>"
            f'<td class="t">{_e(_reasons(report, g))}</td></tr>'
        )
    return (
        f"<table>{_cols(widths)}<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


# -- charts -----------------------------------------------------------------------------------


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(title)}" font-size="13"><title>{_e(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, value: str, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{_e(value)}</text>'


def _nice_max(value: float) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step * 5:
            return step * 5
    return int(value) + 1


def weekly_chart(report: Report) -> str:
    """Cards issued per week (shown and silent), stacked by drug."""
    width, height, left, right, top, bottom = 1300, 330, 60, 190, 30, 60
    weeks = list(report.weekly)
    drugs = sorted({d for counts in report.weekly.values() for d in counts})
    title = "Cards issued per week (shown and silent), by drug"
    body = [_text(left, 18, title, font_weight="600")]
    if not weeks:
        body.append(_text(width / 2, height / 2, "no cards in this period", "middle"))
        return _svg(width, height, title, body)
    highest = max(sum(c.values()) for c in report.weekly.values())
    top_value = _nice_max(highest)
    plot_w, plot_h = width - left - right, height - top - bottom
    for i in range(6):
        value = top_value * i / 5
        y = top + plot_h - plot_h * i / 5
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        body.append(_text(left - 6, y + 4, f"{value:g}", "end"))
    slot = plot_w / len(weeks)
    every = max(1, len(weeks) // 16)  # at most 16 dates under the axis
    for i, week in enumerate(weeks):
        x, y = left + slot * i + slot * 0.15, top + plot_h
        for j, drug in enumerate(drugs):
            n = report.weekly[week][drug]
            if not n:
                continue
            h = plot_h * n / top_value
            y -= h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{_e(shown(drug))}, week of {week}: '
                f"{n}</title></rect>"
            )
        if i % every == 0:
            body.append(
                _text(left + slot * (i + 0.5), top + plot_h + 18, week.isoformat(), "middle")
            )
    body.append(_text(left + plot_w / 2, height - 12, "week starting (Monday)", "middle"))
    for j, drug in enumerate(drugs[:18]):
        y = top + 16 * j
        body.append(
            f'<rect x="{left + plot_w + 16}" y="{y}" width="11" height="11" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/>'
        )
        body.append(_text(left + plot_w + 32, y + 10, shown(drug, 22)))
    return _svg(width, height, title, body)


def override_chart(report: Report) -> str:
    """The override rate of each recommendation with feedback, with its 95% interval."""
    rated = [g for g in report.by_recommendation if g.with_feedback]
    width, left, right, row = 1300, 470, 40, 24
    height = 70 + row * max(len(rated), 1)
    title = "Override rate by recommendation, % of cards with feedback (95% Wilson CI)"
    body = [_text(10, 18, title, font_weight="600")]
    plot_w, top = width - left - right, 34
    if not rated:
        body.append(_text(width / 2, 50, "no feedback in this period", "middle"))
        return _svg(width, height, title, body)
    for pct in range(0, 101, 20):
        x = left + plot_w * pct / 100
        bottom = top + row * len(rated)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="#ddd"/>')
        body.append(_text(x, bottom + 16, f"{pct}%", "middle"))
    for i, g in enumerate(rated):
        y = top + row * i + row / 2
        low, high = g.ci or (0.0, 0.0)
        rate = g.override_rate or 0.0
        body.append(_text(left - 10, y + 4, f"{shown(g.label, 60)} (n={g.with_feedback})", "end"))
        body.append(
            f'<line x1="{left + plot_w * low:.1f}" x2="{left + plot_w * high:.1f}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="#b03a2e" stroke-width="2"/>'
        )
        body.append(
            f'<circle cx="{left + plot_w * rate:.1f}" cy="{y:.1f}" r="5" fill="#b03a2e">'
            f"<title>{_e(rate_text(g))}</title></circle>"
        )
    return _svg(width, height, title, body)


def reasons_chart(report: Report) -> str:
    """The ten most given override reasons."""
    reasons = report.total.reasons.most_common(10)
    width, left, right, row = 1300, 470, 60, 24
    height = 60 + row * max(len(reasons), 1)
    title = "Override reasons (overridden cards)"
    body = [_text(10, 18, title, font_weight="600")]
    if not reasons:
        body.append(_text(width / 2, 50, "no overrides in this period", "middle"))
        return _svg(width, height, title, body)
    most = max(n for _, n in reasons)
    plot_w, top = width - left - right, 34
    for i, (code, n) in enumerate(reasons):
        y = top + row * i
        w = plot_w * n / most
        body.append(_text(left - 10, y + row / 2 + 4, shown(report.reason_label(code), 64), "end"))
        body.append(
            f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" fill="#0072B2"/>'
        )
        body.append(_text(left + w + 6, y + row / 2 + 4, str(n)))
    return _svg(width, height, title, body)


def html_page(report: Report, generated: datetime | None = None) -> str:
    generated = generated or datetime.now(UTC)
    period = f"{report.since} to {report.until}"
    total, calls = report.total, report.calls
    per_1000 = (
        1000 * (total.issued - _patient_view(report)) / calls.orders if calls.orders else None
    )
    boxes = [
        ("hook calls", f"{calls.calls:,}" if calls.first_hour else "not counted"),
        ("orders judged", f"{calls.orders:,}" if calls.first_hour else "not counted"),
        ("cards issued", f"{total.issued:,}"),
        ("shown / silent", f"{total.shown:,} / {total.silent:,}"),
        ("cards per 1,000 orders", "-" if per_1000 is None else f"{per_1000:.1f}"),
        ("override rate", rate_text(total)),
    ]
    summary = "".join(f"<div>{_e(name)}<b>{_e(value)}</b></div>" for name, value in boxes)
    reasons = "".join(
        f'<tr><td class="t">{_e(report.reason_label(code))}</td><td>{n}</td></tr>'
        for code, n in report.total.reasons.most_common(10)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>PGx Pain CDS: cards and overrides, {_e(period)}</title>
<style>{_STYLE}</style></head><body>
<h1>PGx Pain CDS: cards and overrides</h1>
<p>Cards issued <b>{_e(period)}</b> (UTC days, both included). Knowledge version(s):
{_e(", ".join(report.knowledge_versions) or "-")}. Generated {generated:%Y-%m-%d %H:%M} UTC.</p>
<div class="summary">{summary}</div>
<p class="note">{_e(calls_text(report))}</p>
<p class="note"><b>Silent</b> cards were evaluated and logged but not shown (site policy):
they show how often a card would fire. <b>Per 1,000 orders</b>: cards issued (shown and silent)
per 1,000 orders of the drug the service judged (patient-view cards: per 1,000 patient-view
calls). <b>Accepted</b>: the clinician took a suggestion. <b>Override rate</b>: overridden /
(accepted + overridden), with a Wilson 95% confidence interval; cards with no feedback are
counted beside it, not in it. <b>Patients</b>: distinct patients (counted by a keyed hash; the
log holds no patient identifiers).</p>
<h2>By recommendation</h2>
{_recommendation_table(report)}
<h2>By drug</h2>
{_summary_table(report, report.by_drug, "drug (genes)")}
<h2>By indicator</h2>
{_summary_table(report, report.by_indicator, "indicator")}
<h2>Cards per week</h2>
{weekly_chart(report)}
<h2>Override rates</h2>
{override_chart(report)}
<h2>Override reasons</h2>
<table style="width:auto;min-width:40%"><thead><tr><th class="t">reason</th>
<th>overridden cards</th></tr></thead>
<tbody>{reasons or '<tr><td colspan="2">no overrides</td></tr>'}</tbody></table>
{reasons_chart(report)}
<p>Overrides with a comment: {report.total.comments}. Feedback received for cards the log
does not know: {report.unknown_feedback}.</p>
</body></html>
"""


def _patient_view(report: Report) -> int:
    """Patient-view cards (counted against calls, not orders)."""
    return sum(g.issued for g in report.by_drug if g.drug == "patient-view")
