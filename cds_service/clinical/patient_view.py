"""Patient view: the patient's pharmacogenomic profile for pain care, when the chart opens.

``patient-view`` has no orders. Every drug the knowledge covers is judged as a virtual order
through the prescribing hooks' own stages: the same genomic facts, phenoconversion
(``interactions.phenoconvert``), guideline rows (``recommendations.match``) and card
indicator (``cards.match_indicator``). A drug is listed as affected exactly when ordering it
would give a card, with that card's advice, so the summary never contradicts a prescribing
card. Nothing here is a second copy of a rule.

One ``info`` card when the patient has a usable result for a gene the guidelines use: the
summary names the genes that change advice ("PGx for pain: CYP2D6 poor metabolizer, CYP2C9
poor metabolizer (AS 0) — 13 pain drugs affected"), or says that none does; the detail is a
small table per such gene (result, the drugs it affects with the advice, the drugs whose
advice is unchanged, phenoconversion, re-interpretation), with the genes that change nothing
on one line. No result on file: no card, unless the site switches on the "no PGx results on
file" card (``PGX_CDS_PATIENT_VIEW_NO_RESULTS_CARD``). Only indeterminate results: no card.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..core.trace import Trace
from ..core.wording import SUMMARY_LIMIT, code_span, escaped, inert, number
from ..fhir.hook_context import DraftOrder
from ..genomics.gene_decision import GeneResult
from ..knowledge.loader import Knowledge
from ..knowledge.models import Guideline
from . import interactions, recommendations
from .cards import SOURCE_LABEL, TOPIC_SYSTEM, match_indicator
from .medication_history import Therapy
from .medications import IdentifiedDrug
from .recommendations import Match

SUMMARY_TOPIC = "patient-view-summary"
NO_RESULTS_TOPIC = "patient-view-no-results"
VIRTUAL = "patient view (every covered drug, as if ordered)"
MAX_SUMMARY = SUMMARY_LIMIT - 1  # under 140 characters
ADVICE_CHARS = 160

_LEVELS = {None: 0, "info": 1, "warning": 2, "critical": 3}
#: the advice of each guideline action, in the words of the prescribing card's summary
ADVICE = {
    "avoid": "Avoid",
    "alternative": "Consider an alternative",
    "adjust-dose": "Adjust dose",
    "caution": "Reduced or uncertain response possible",
    "standard": "Label dosing",
    "no-recommendation": "No genotype-based advice",
}
UNREMARKABLE = frozenset({"Normal Metabolizer", "negative"})
SPANS = "Advice depends on the activity score"
_SHORT = {
    "Poor Metabolizer": "PM",
    "Intermediate Metabolizer": "IM",
    "Normal Metabolizer": "NM",
    "Rapid Metabolizer": "RM",
    "Ultrarapid Metabolizer": "UM",
}


def advice_words(match: Match) -> str:
    """The advice in a few words: the row's own summary wording where it has one."""
    rec = match.recommendation
    if match.possible:
        return SPANS
    if rec.summary:
        words = rec.summary.format(drug="", Drug="").lstrip(": ").strip()
        return words[:1].upper() + words[1:]
    return ADVICE[rec.action]


@dataclass(frozen=True)
class DrugAdvice:
    """What a prescribing card for ``drug`` would say (``level`` None: no card)."""

    drug: str
    match: Match
    level: str | None
    #: with phenoconversion, the advice by genotype alone when it differs
    by_genotype: str | None = None

    @property
    def affected(self) -> bool:
        return self.level is not None

    @property
    def advice(self) -> str:
        return advice_words(self.match)

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(r.gene for r in self.match.results)


def virtual_orders(knowledge: Knowledge) -> list[IdentifiedDrug]:
    """Every covered drug as an order with no id (nothing to replace, no dose)."""
    return [
        IdentifiedDrug(
            drug,
            DraftOrder({"resourceType": "MedicationRequest", "status": "draft"}),
            VIRTUAL,
            drug,
        )
        for drug in sorted(knowledge.covered_drugs)
    ]


def functional_facts(
    facts: dict[str, GeneResult],
    inhibitors: list[interactions.InhibitorUse],
    knowledge: Knowledge,
    trace: Trace,
) -> dict[str, GeneResult]:
    """The results as they act while the patient takes ``inhibitors`` (phenoconversion)."""
    cyp2d6 = facts.get(interactions.GENE)
    if cyp2d6 is None or not inhibitors:
        return facts
    return {
        **facts,
        interactions.GENE: interactions.phenoconvert(cyp2d6, inhibitors, knowledge, trace),
    }


def drug_advice(
    facts: dict[str, GeneResult],
    genetic: dict[str, GeneResult],
    knowledge: Knowledge,
    trace: Trace,
    therapies: dict[str, Therapy] | None = None,
) -> dict[str, DrugAdvice]:
    """Per covered drug, the advice its prescribing card would give from ``facts`` (drugs
    without a usable result for their genes are left out: they would get no card). Where
    ``facts`` differ from the ``genetic`` ones (phenoconversion), the advice by genotype alone
    is noted when it differs."""
    drugs = virtual_orders(knowledge)
    found = _most_severe(
        recommendations.match(drugs, facts, knowledge, trace, therapies), knowledge
    )
    if facts.get(interactions.GENE) is genetic.get(interactions.GENE):
        return found
    by_genotype = _most_severe(
        recommendations.match(drugs, genetic, knowledge, Trace(), therapies), knowledge
    )
    out = {}
    for drug, advice in found.items():
        before = by_genotype.get(drug)
        text = before.advice if before is not None else "no advice"
        out[drug] = (
            advice if text == advice.advice else DrugAdvice(drug, advice.match, advice.level, text)
        )
    return out


def _most_severe(matches: list[Match], knowledge: Knowledge) -> dict[str, DrugAdvice]:
    out: dict[str, DrugAdvice] = {}
    for m in matches:
        level = match_indicator(m, knowledge)
        known = out.get(m.drug.drug)
        if known is None or _LEVELS[level] > _LEVELS[known.level]:
            out[m.drug.drug] = DrugAdvice(m.drug.drug, m, level)
    return out


def build_cards(
    facts: dict[str, GeneResult],
    inhibitors: list[interactions.InhibitorUse],
    knowledge: Knowledge,
    trace: Trace,
    *,
    no_results_card: bool = False,
    therapies: dict[str, Therapy] | None = None,
) -> list[dict[str, Any]]:
    """The patient-view cards: one summary card, or none (see the module's notes)."""
    if not facts:
        trace.add("patient view", "no pharmacogenomic results on file")
        return [no_results(knowledge)] if no_results_card else []
    if not any(f.actionable and f.gene in knowledge.covered_genes for f in facts.values()):
        trace.add("patient view", "no usable result for a gene the guidelines use: no card")
        return []
    acting = functional_facts(facts, inhibitors, knowledge, trace)
    advice = drug_advice(acting, facts, knowledge, trace, therapies)
    affected = [a for a in advice.values() if a.affected]
    trace.add(
        "patient view",
        f"{len(affected)} covered drug(s) would get a card"
        + "".join(f"; {a.drug} ({a.level})" for a in affected),
    )
    return [summary_card(acting, advice, knowledge)]


def _causes(a: DrugAdvice) -> tuple[str, ...]:
    """The genes a drug is listed under: for an affected drug, those of its row whose result
    is not the unremarkable one (CYP2D6, not the normal CYP2C19 beside it); else all."""
    if not a.affected:
        return a.genes
    causes = tuple(r.gene for r in a.match.results if r.phenotype not in UNREMARKABLE)
    return causes or a.genes


def summary_card(
    facts: dict[str, GeneResult], advice: dict[str, DrugAdvice], knowledge: Knowledge
) -> dict[str, Any]:
    per_gene: dict[str, list[DrugAdvice]] = {g: [] for g in facts}
    for a in advice.values():
        for gene in _causes(a):
            per_gene.setdefault(gene, []).append(a)
    changing = [g for g, items in per_gene.items() if any(a.affected for a in items)]
    changing.sort(
        key=lambda g: (
            -max(_LEVELS[a.level] for a in per_gene[g]),
            -sum(a.affected for a in per_gene[g]),
            g,
        )
    )
    affected = [a for a in advice.values() if a.affected]
    unchanged = [facts[g] for g in sorted(facts) if g not in changing and facts[g].actionable]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": summary([facts[g] for g in changing], unchanged, len(affected), knowledge),
        "indicator": "info",
        "detail": detail(facts, per_gene, changing, knowledge),
        "source": {
            "label": f"CPIC guidelines ({SOURCE_LABEL})",
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": SUMMARY_TOPIC,
                "display": "Pharmacogenomic profile for pain care",
            },
        },
        "links": guideline_links(affected or list(advice.values())),
    }


def summary(
    changing: list[GeneResult], unchanged: list[GeneResult], drugs: int, knowledge: Knowledge
) -> str:
    """``PGx for pain: CYP2D6 poor metabolizer, CYP2C9 poor metabolizer (AS 0) — 13 pain drugs
    affected`` (or ``PGx for pain, no change in advice: CYP2D6 normal metabolizer``), shortened
    to fit the 140 characters CDS Hooks allows."""
    if changing:
        head, named = "PGx for pain: ", changing
        tail = f" — {drugs} pain drug{'s' if drugs != 1 else ''} affected"
    else:
        head, named, tail = "PGx for pain, no change in advice: ", unchanged, ""
    for short in (False, True):
        text = head + ", ".join(_who(f, knowledge, short) for f in named) + tail
        if len(text) <= MAX_SUMMARY:
            return text
    for keep in range(len(named) - 1, 0, -1):
        names = ", ".join(_who(f, knowledge, True) for f in named[:keep])
        text = f"{head}{names} +{len(named) - keep} more{tail}"
        if len(text) <= MAX_SUMMARY:
            return text
    return (head + named[0].gene + tail)[:MAX_SUMMARY]


def _who(fact: GeneResult, knowledge: Knowledge, short: bool) -> str:
    phenotype = _SHORT.get(fact.phenotype, fact.phenotype) if short else fact.phenotype.lower()
    text = f"{fact.gene} {phenotype}"
    if fact.activity_score_text is not None and _score_decides(fact.gene, knowledge):
        text += f" (AS {fact.activity_score_text})"
    if fact.genetic_phenotype and fact.phenoconverted_by:
        text += f" while taking {fact.phenoconverted_by[0].split(' (')[0]}"
    return text


def _score_decides(gene: str, knowledge: Knowledge) -> bool:
    """Do the gene's guideline rows go by activity score alone (CYP2C9)?"""
    return any(
        c.activity_score_min is not None and c.phenotype is None
        for r in knowledge.recommendations
        for g, c in r.when.items()
        if g == gene
    )


def detail(
    facts: dict[str, GeneResult],
    per_gene: dict[str, list[DrugAdvice]],
    changing: list[str],
    knowledge: Knowledge,
) -> str:
    lines: list[str] = [
        "What each result means for the pain drugs CPIC covers: the advice a prescribing "
        "card gives when one is ordered.",
        "",
    ]
    for gene in changing:
        lines += [*gene_table(facts[gene], per_gene[gene], knowledge), ""]
    usable = [g for g in sorted(facts) if g not in changing and facts[g].actionable]
    if usable:
        parts = []
        for g in usable:
            drugs = sorted({a.drug for a in per_gene.get(g, [])})
            parts.append(f"{_result_words(facts[g])}" + (f" ({', '.join(drugs)})" if drugs else ""))
        lines += ["**No change in advice:** " + "; ".join(parts) + ".", ""]
    unclear = [g for g in sorted(facts) if not facts[g].actionable]
    if unclear:
        lines += [
            "**Not usable (no advice from them):** "
            + "; ".join(
                escaped(g) + (f" ({inert(facts[g].notes[0])})" if facts[g].notes else "")
                for g in unclear
            )
            + ".",
            "",
        ]
    lines.append(
        f"**Source:** CPIC guidelines (links below). Knowledge version {knowledge.version}."
    )
    return "\n".join(lines)


def gene_table(fact: GeneResult, items: list[DrugAdvice], knowledge: Knowledge) -> list[str]:
    genetic = fact.genetic_phenotype
    heading = f"{genetic.lower()} by genotype" if genetic else fact.phenotype.lower()
    rows = [
        f"| **{inert(fact.gene)}** | **{escaped(heading)}** |",
        "|---|---|",
        f"| result | {_result(fact)} |",
    ]
    if genetic:
        rows.append(
            f"| phenoconversion | functionally **{fact.phenotype.lower()}** while taking "
            + ", ".join(inert(p) for p in fact.phenoconverted_by)
            + " |"
        )
    if fact.reinterpreted_from:
        rows.append(
            f"| lab's label | {inert(fact.reinterpreted_from)} (outdated; re-interpreted) |"
        )
    for note in fact.notes:
        if genetic and note.startswith(f"{fact.gene} {genetic.lower()} by"):
            continue  # the phenoconversion row says it
        rows.append(f"| note | {inert(note)} |")
    unchanged = []
    for a in sorted(items, key=lambda a: (-_LEVELS[a.level], a.drug)):
        if not a.affected:
            unchanged.append(f"{a.drug} ({escaped(a.advice.lower())})")
            continue
        rows.append(f"| {a.drug} | {_advice_cell(a, knowledge)} |")
    if unchanged:
        rows.append(f"| no change | {', '.join(unchanged)} |")
    return rows


def _advice_cell(a: DrugAdvice, knowledge: Knowledge) -> str:
    m = a.match
    rec = m.recommendation
    org = rec.guideline.organization if rec.guideline else "guideline"
    if m.possible:
        options = "; ".join(
            f"{'; '.join(c.describe() for c in row.when.values())}: {ADVICE[row.action].lower()}"
            for row in m.possible
        )
        text = f"**{SPANS}** ({options}); the genotype or score decides"
    else:
        advice = escaped(a.advice)
        text = f"**{advice}** ({org}, {rec.strength}). {inert(_short_advice(rec.recommendation))}"
    others = [r for r in m.results if r.gene not in _causes(a)]
    if others:
        text += " With " + ", ".join(_result_words(r) for r in others) + "."
    dosing = knowledge.dosing.drugs.get(a.drug)
    low = dosing.low_dose_max_mg_per_day if dosing else None
    if low is not None and rec.action in ("avoid", "alternative", "adjust-dose"):
        # as label_rules.with_dose: the dose advice is for depression doses
        text += f" At ≤{number(low)} mg/day (neuropathic-pain doses): use with caution."
    if a.by_genotype is not None:
        text += f" By genotype alone: {a.by_genotype.lower()}."
    return text


def _short_advice(text: str) -> str:
    """The advice's first sentence, and the next ones while they keep it short (a caution's
    "if the response is not adequate..." belongs to it)."""
    sentences = re.split(r"(?<=\.)\s+", text.strip())
    out = sentences[0]
    for sentence in sentences[1:]:
        if len(out) + 1 + len(sentence) > ADVICE_CHARS:
            break
        out += " " + sentence
    return out


def _result(fact: GeneResult) -> str:
    parts = []
    if fact.diplotype:
        parts.append(_code(fact.diplotype))
    if fact.genetic_phenotype is None and fact.activity_score_text is not None:
        parts.append(f"activity score {inert(fact.activity_score_text)}")
    when = f" of {inert(fact.date_text)}" if fact.date_text else ""
    parts.append(f"{fact.kind} result{when}")
    return ", ".join(parts)


def _result_words(fact: GeneResult) -> str:
    text = f"{fact.gene} {fact.phenotype.lower()}"
    return inert(text) + (f" {_code(fact.diplotype)}" if fact.diplotype else "")


def _code(text: str) -> str:
    return code_span(text, table=True)


def guideline_links(affected: list[DrugAdvice]) -> list[dict[str, str]]:
    """One link per guideline of the drugs (the affected ones), naming them."""
    by_url: dict[str, tuple[Guideline, list[str]]] = {}
    for a in sorted(affected, key=lambda a: a.drug):
        guideline = a.match.recommendation.guideline
        if guideline is not None:
            by_url.setdefault(guideline.url, (guideline, []))[1].append(a.drug)
    return [
        {
            "label": f"{g.name} guideline: {', '.join(drugs)}",
            "url": url,
            "type": "absolute",
        }
        for url, (g, drugs) in by_url.items()
    ]


def no_results(knowledge: Knowledge) -> dict[str, Any]:
    """The optional card for a patient with no pharmacogenomic result on file."""
    by_gene: dict[str, set[str]] = {}
    guidelines: dict[str, tuple[Guideline, list[str]]] = {}
    for rec in knowledge.recommendations:
        for gene in rec.when:
            by_gene.setdefault(gene, set()).add(rec.drug)
        if rec.guideline is not None:
            drugs = guidelines.setdefault(rec.guideline.url, (rec.guideline, []))[1]
            if rec.drug not in drugs:
                drugs.append(rec.drug)
    genes = "; ".join(
        f"{inert(g)} ({', '.join(sorted(drugs))})" for g, drugs in sorted(by_gene.items())
    )
    return {
        "uuid": str(uuid.uuid4()),
        "summary": "PGx for pain: no pharmacogenomic results on file",
        "indicator": "info",
        "detail": "No pharmacogenomic result was found for this patient. Results for these "
        f"genes change the advice for pain drugs: {genes}.\n\n"
        f"**Source:** CPIC guidelines (links below). Knowledge version {knowledge.version}.",
        "source": {
            "label": f"CPIC guidelines ({SOURCE_LABEL})",
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": NO_RESULTS_TOPIC,
                "display": "No pharmacogenomic results on file",
            },
        },
        "links": [
            {"label": f"{g.name} guideline: {', '.join(drugs)}", "url": url, "type": "absolute"}
            for url, (g, drugs) in guidelines.items()
        ],
    }
