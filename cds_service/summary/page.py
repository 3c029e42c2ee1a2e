"""The patient's summary as one HTML page: results per gene, the pain drugs whose advice
changes (in plain words), a section for clinicians (the guideline advice and links), the
SMART Health Card's QR code and a wallet-size card to cut out.

One self-contained page (no script, no outside resource: it can be saved, mailed, printed).
Print CSS: the page fits the printable width of both A4 (210 mm) and US Letter (8.5 in)
with 12 mm margins; the wallet card is ID-1 size (85.6 x 54 mm, front and back side by side,
to fold) and never split across pages. Every word comes from ``wording``; everything from
the record is escaped.
"""

from __future__ import annotations

from html import escape

from . import wording as w
from .build import DrugLine, GeneLine, Summary
from .bundle import carries

CSS = """
:root { color-scheme: light; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111;
  max-width: 180mm; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.6em; margin: 0 0 .3em; } h2 { font-size: 1.25em; margin: 1.4em 0 .4em;
  border-bottom: 2px solid #245; padding-bottom: .15em; }
.who { margin: 0 0 .8em; } .who span { margin-right: 1.5em; }
.warn { background: #fff4d6; border-left: 5px solid #c80; padding: .5em .8em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0; }
th, td { text-align: left; vertical-align: top; padding: .35em .45em;
  border-bottom: 1px solid #ccc; }
th { background: #eef2f6; }
.drugs li { margin: .3em 0; } .level-critical { color: #a00; font-weight: 700; }
.level-warning { color: #8a4b00; font-weight: 700; }
.clinician { font-size: .9em; }
.qr { text-align: center; margin: 1em 0; } .qr svg { width: 80mm; height: 80mm; }
.small { font-size: .85em; color: #333; }
.wallet { display: flex; gap: 0; margin: 1em 0; break-inside: avoid; page-break-inside: avoid; }
.wallet .side { width: 85.6mm; height: 54mm; box-sizing: border-box; border: 1px dashed #555;
  padding: 2.5mm 3mm; overflow: hidden; font-size: 7.5pt; line-height: 1.25; }
.wallet .side h3 { font-size: 9pt; margin: 0 0 1mm; } .wallet p { margin: 1mm 0; }
.wallet ul { margin: 0; padding-left: 3.5mm; }
.wallet .back { display: flex; gap: 2mm; align-items: flex-start; }
.wallet .back svg { width: 47mm; height: 47mm; flex: none; }
@page { margin: 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  .noprint { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  table, .qr { break-inside: avoid; page-break-inside: avoid; }
  a { color: inherit; }
  .clinician a[href]::after { content: " (" attr(href) ")"; font-size: .8em;
    word-break: break-all; }
}
"""


def render(summary: Summary, *, qr_svg: str | None = None, issuer: str | None = None) -> str:
    """The page for ``summary``; ``qr_svg`` the SMART Health Card's QR code (an ``<svg>``
    element from ``shc.qr_svg``), None when there is no card (no result to carry, or no public
    URL to sign for)."""
    t = w.text
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{w.LANGUAGE}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="robots" content="noindex">',
        f"<title>{escape(t('title'))}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(t('title'))}</h1>",
        _who(summary),
        f"<p>{escape(t('intro'))}</p>",
        f'<p class="warn">{escape(t("never_stop"))}</p>',
        *_results(summary),
        *_drugs(summary),
        *_qr(qr_svg, carries(summary)),
        *_wallet(summary, qr_svg, issuer),
        *_clinician(summary),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _who(summary: Summary) -> str:
    t = w.text
    items = [
        (t("patient"), summary.name or t("unknown")),
        (t("born"), summary.birth_date or t("unknown")),
        (t("printed"), summary.made_on),
    ]
    spans = "".join(f"<span><b>{escape(k)}:</b> {escape(v)}</span>" for k, v in items)
    return f'<p class="who">{spans}</p>'


def _gene_meaning(g: GeneLine) -> str:
    t = w.text
    if g.readings:  # results that disagree: each one, never a single settled meaning
        said = "; ".join(
            f"{w.phenotype_short(r.phenotype)} ({r.date or t('unknown')})" for r in g.readings
        )
        return f"{t('disagree')} ({said})"
    words = w.phenotype_words(g.phenotype, g.usable, g.gene)
    if g.acting and g.converted_by:
        words += " " + t(
            "phenoconverted",
            drugs=", ".join(g.converted_by),
            now=w.phenotype_short(g.acting),
        )
    return words


def _results(summary: Summary) -> list[str]:
    t = w.text
    out = [f"<h2>{escape(t('results_heading'))}</h2>"]
    genes = summary.genes  # (an unclear result is listed as unclear, never left out)
    if not genes:
        return [*out, f"<p>{escape(t('no_results'))}</p>"]
    head = [t("gene"), t("result"), t("genotype"), t("date"), t("lab")]
    out.append(
        '<table class="results"><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    )
    for g in genes:
        genotype = g.diplotype or ""
        if g.activity_score:
            genotype += f" (activity score {g.activity_score})"
        called = w.phenotype_short(g.phenotype)
        dates, labs = [g.date or t("unknown")], [g.lab or t("unknown")]
        if g.readings:
            called = w.text("disagree_short")
            genotype = "; ".join(r.value for r in g.readings)
            dates = [r.date or t("unknown") for r in g.readings]
            labs = [r.lab or t("unknown") for r in g.readings]
        cells = [
            f"<b>{escape(g.gene)}</b><br>{escape(called)}",
            escape(_gene_meaning(g)),
            escape(genotype.strip() or t("unknown")),
            "<br>".join(escape(d) for d in dates),
            "<br>".join(escape(lab) for lab in labs),
        ]
        out.append(
            f'<tr data-gene="{escape(g.gene)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    out.append("</tbody></table>")
    return out


def _lay_advice(d: DrugLine) -> str:
    return w.ACTION_UNCLEAR if d.unclear else w.ACTION_WORDS.get(d.action, w.ACTION_UNCLEAR)


def _drugs(summary: Summary) -> list[str]:
    t = w.text
    out = [f"<h2>{escape(t('drugs_heading'))}</h2>"]
    if summary.drugs:
        out.append(f'<p>{escape(t("drugs_intro"))}</p><ul class="drugs">')
        for d in summary.drugs:
            out.append(
                f'<li data-drug="{escape(d.drug)}"><span class="level-{escape(d.level)}">'
                f"{escape(d.drug.capitalize())}</span> ({escape(', '.join(d.genes))}): "
                f"{escape(_lay_advice(d))}</li>"
            )
        out.append("</ul>")
    else:
        out.append(f"<p>{escape(t('no_drug_changes'))}</p>")
    if summary.rules:
        out.append(f'<h2>{escape(t("rules_heading"))}</h2><ul class="drugs">')
        for r in summary.rules:
            words = (
                w.PRETEST_WORDS
                if r.pretest
                else w.NOTICE_WORDS.get(r.level, w.NOTICE_WORDS["info"])
            )
            out.append(
                f'<li data-drug="{escape(r.drug)}"><span class="level-{escape(r.level)}">'
                f"{escape(r.drug.capitalize())}</span>: {escape(words)}</li>"
            )
        out.append("</ul>")
    if summary.unchanged:
        out.append(
            f"<p><b>{escape(t('unchanged_heading'))}:</b> "
            f"{escape(', '.join(summary.unchanged))}.</p>"
        )
    if summary.silent:
        out.append(f"<p>{escape(t('silent'))}</p>")
    return out


def _qr(qr_svg: str | None, results: bool) -> list[str]:
    t = w.text
    if qr_svg is None:
        why = t("card_unsigned") if results else t("card_no_results")
        return [f'<p class="small">{escape(why)}</p>']
    return [
        f'<div class="qr" role="img" aria-label="{escape(t("qr_alt"))}">{qr_svg}</div>',
        f'<p class="small">{escape(t("card_scan"))}</p>',
    ]


def _wallet(summary: Summary, qr_svg: str | None, issuer: str | None) -> list[str]:
    """Front: who, the results, the drugs by what to do (avoid, ask first, note); back: the
    QR code, what to do with the card, the issuer."""
    t = w.text
    gene_items = "".join(
        f"<li><b>{escape(g.gene)}</b> {escape(g.diplotype or '')} "
        f"{escape(t('disagree_short') if g.readings else w.phenotype_short(g.phenotype))}</li>"
        for g in summary.genes
    )
    by_level: dict[str, list[str]] = {}
    for d in summary.drugs:
        by_level.setdefault(d.level, []).append(d.drug)
    for r in summary.rules:
        if not r.pretest and r.drug not in by_level.get(r.level, []):
            by_level.setdefault(r.level, []).append(r.drug)
    drug_lines = "".join(
        f"<div><b>{escape(w.CARD_LEVEL[level].capitalize())}:</b> "
        f"{escape(', '.join(by_level[level]))}</div>"
        for level in ("critical", "warning", "info")
        if by_level.get(level)
    )
    born = f" · {escape(summary.birth_date)}" if summary.birth_date else ""
    front = (
        f'<div class="side front"><h3>{escape(t("card_title"))}</h3>'
        f"<div>{escape(summary.name or '')}{born}</div><ul>{gene_items}</ul>{drug_lines}</div>"
    )
    issued = f"<div>{escape(t('card_issuer', issuer=issuer))}</div>" if issuer else ""
    back = (
        f'<div class="side back">{qr_svg or ""}<div><b>{escape(t("card_show"))}</b>'
        f"<p>{escape(t('card_scan'))}</p>{issued}</div></div>"
    )
    return [
        f"<h2>{escape(t('card_heading'))}</h2>",
        f'<p class="small noprint">{escape(t("card_help"))}</p>',
        f'<div class="wallet">{front}{back}</div>',
    ]


def _clinician(summary: Summary) -> list[str]:
    t = w.text
    out = [
        '<section class="clinician">',
        f"<h2>{escape(t('clinician_heading'))}</h2>",
        f"<p>{escape(t('clinician_intro', version=summary.knowledge_version))}</p>",
    ]
    if summary.card_summary:
        out.append(f"<p><b>{escape(summary.card_summary)}</b></p>")
    if summary.drugs:
        head = [t("drug"), t("gene"), t("advice"), t("source")]
        out.append(
            "<table><thead><tr>"
            + "".join(f"<th>{escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>"
        )
        for d in summary.drugs:
            source = escape(d.guideline or "")
            if d.url:
                source = f'<a href="{escape(d.url)}">{source or escape(d.url)}</a>'
            if d.strength:
                source += f", {escape(t('strength'))}: {escape(d.strength)}"
            if d.table:
                source += f" ({escape(d.table)})"
            cells = [
                f'<b class="level-{escape(d.level)}">{escape(d.drug)}</b>',
                escape(", ".join(d.genes)),
                f"<b>{escape(d.advice)}.</b> {escape(d.recommendation)}",
                source,
            ]
            out.append(
                f'<tr data-drug="{escape(d.drug)}">'
                + "".join(f"<td>{c}</td>" for c in cells)
                + "</tr>"
            )
        out.append("</tbody></table>")
    if summary.rules:
        out.append("<ul>")
        for r in summary.rules:
            out.append(
                f"<li><b>{escape(r.drug)}</b>: {escape(r.summary)} "
                f'(<a href="{escape(r.url)}">{escape(r.source)}</a>)</li>'
            )
        out.append("</ul>")
    out.append("</section>")
    return out
