"""The worklist as the pharmacist gets it: a CSV file, an HTML page to work through, or a
plain listing.

They carry patient references and the orders' texts: they are for the pharmacist, not for
logs. Everything in them that came from the FHIR server is escaped: in the page, as HTML text
(the page also forbids scripts and outside resources by its Content-Security-Policy); in the
CSV, a cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR)
starts with a ``'``.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from html import escape

from .judge import Row
from .run import Outcome

COLUMNS = (
    ("indicator", "indicator"),
    ("patient", "patient"),
    ("order", "order"),
    ("status", "order_status"),
    ("order_date", "order_date"),
    ("medication", "medication"),
    ("drug", "drug"),
    ("genes", "genes"),
    ("summary", "summary"),
    ("advice", "advice"),
    ("result_date", "result_date"),
    ("result_issued", "result_issued"),
    ("recommendation", "recommendation"),
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA) else value


def to_csv(outcome: Outcome) -> str:
    """One line per order and card, with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([header for _, header in COLUMNS])
    for row in outcome.rows:
        writer.writerow([_cell(str(getattr(row, name))) for name, _ in COLUMNS])
    return out.getvalue()


def summary_line(outcome: Outcome) -> str:
    """One line of counts (no patient data: fit for a log)."""
    patients = len({r.patient for r in outcome.rows})
    line = (
        f"{len(outcome.rows)} order(s) of {patients} patient(s) to review "
        f"({outcome.judged} of {outcome.orders} orders of {outcome.patients} patients judged, "
        f"{outcome.pages} pages read)"
    )
    if outcome.tasks is not None:
        line += f"; Tasks: {outcome.tasks.written} written, {outcome.tasks.existing} already there"
    if not outcome.complete:
        line += "; INCOMPLETE"
    return line


def problems_text(outcome: Outcome) -> list[str]:
    """Why the list may be incomplete, without patient or order references (for stderr)."""
    lines = list(outcome.problems)
    reasons: dict[str, int] = {}
    for _, _, why in outcome.unjudged:
        reasons[why] = reasons.get(why, 0) + 1
    lines += [f"{n} order(s) could not be judged: {why}" for why, n in sorted(reasons.items())]
    if outcome.tasks is not None:
        lines += outcome.tasks.failed
    return lines


def to_text(outcome: Outcome) -> str:
    """A plain listing, one block per order and card."""
    blocks = []
    for r in outcome.rows:
        dates = f"result of {r.result_date}" if r.result_date else "no result date"
        blocks.append(
            f"[{r.indicator}] {r.patient}  {r.order} ({r.status}, written {r.order_date or '?'})\n"
            f"    {r.medication or r.drug}: {r.genes or 'no gene'} ({dates})\n"
            f"    {r.summary}\n"
            f"    {r.advice}"
        )
    blocks += [f"not judged: {p}  {o}: {why}" for p, o, why in outcome.unjudged]
    return "\n".join(blocks) + ("\n" if blocks else "")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1b1b}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ccc;padding:.4rem;vertical-align:top;text-align:left}
th{background:#f2f2f2}
.critical{background:#fde2e1}.warning{background:#fff4d6}
.badge{font-weight:bold;text-transform:uppercase;font-size:.8rem}
.incomplete{border:2px solid #b00;padding:.5rem;background:#fde2e1}
pre{white-space:pre-wrap;font-size:.85rem}
@media print{details{display:none}}
"""


def to_html(
    outcome: Outcome,
    fhir_server: str,
    knowledge_version: str,
    since: str | None = None,
    now: datetime | None = None,
) -> str:
    """A page the pharmacist works through: the most severe first, a box to tick per row."""
    e = _e
    when = (now or datetime.now(UTC)).isoformat(timespec="minutes").replace("+00:00", "Z")
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="referrer" content="no-referrer">'
        f"<title>PGx worklist {e(when)}</title><style>{_STYLE}</style></head><body>\n"
        "<h1>Pharmacogenomic worklist</h1>\n"
        f"<p>Active and on-hold orders whose prescribing check gives a warning or critical "
        f"card. FHIR server {e(fhir_server)}; knowledge {e(knowledge_version)}; made "
        f"{e(when)}"
        + (f"; orders written or results issued since {e(since)}" if since else "")
        + f". {e(summary_line(outcome))}.</p>\n"
    )
    parts = [head]
    problems = problems_text(outcome)
    if problems:
        items = "".join(f"<li>{e(p)}</li>" for p in problems)
        parts.append(
            '<div class="incomplete"><strong>Incomplete:</strong> this list may miss orders.'
            f"<ul>{items}</ul></div>\n"
        )
    if outcome.rows:
        parts.append(
            "<table><thead><tr><th>Done</th><th>Card</th><th>Patient</th><th>Order</th>"
            "<th>Drug and gene</th><th>Result</th><th>Advice</th></tr></thead><tbody>\n"
        )
        parts += [_html_row(r) for r in outcome.rows]
        parts.append("</tbody></table>\n")
    else:
        parts.append("<p>No order to review.</p>\n")
    if outcome.unjudged:
        items = "".join(f"<li>{e(p)} {e(o)}: {e(why)}</li>" for p, o, why in outcome.unjudged)
        parts.append(f"<h2>Orders that could not be judged</h2><ul>{items}</ul>\n")
    parts.append("</body></html>\n")
    return "".join(parts)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _html_row(r: Row) -> str:
    e = _e
    indicator = r.indicator if r.indicator in ("critical", "warning") else ""
    result = e(r.result_date) if r.result_date else "&ndash;"
    if r.result_issued:
        result += f"<br><small>issued {e(r.result_issued[:10])}</small>"
    return (
        f'<tr class="{indicator}"><td><input type="checkbox" aria-label="done"></td>'
        f'<td><span class="badge">{e(r.indicator)}</span><br>{e(r.summary)}</td>'
        f"<td>{e(r.patient)}</td>"
        f"<td>{e(r.order)}<br><small>{e(r.status)}, written {e(r.order_date or '?')}</small></td>"
        f"<td>{e(r.medication or r.drug)}<br><small>{e(r.drug)}; {e(r.genes or 'no gene')}"
        "</small></td>"
        f"<td>{result}</td>"
        f"<td>{e(r.advice)}<details><summary>Card</summary><pre>{e(r.detail)}</pre></details>"
        "</td></tr>\n"
    )
