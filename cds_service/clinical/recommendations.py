"""Match identified drugs against the patient's gene results and the guideline rows.

For each drug, the rows whose genes all have an actionable result are candidates; the
rows naming the most genes win (a two-gene amitriptyline row beats a one-gene row when
both results exist). A drug or gene the knowledge does not cover matches nothing.

A result without a single activity score (a phenotype reported without its score, a
diplotype of unknown copy number) stands for a range of scores. When that range spans rows
that give the same advice, that advice applies with the weakest of their strengths. When
the rows disagree (a CYP2C9 intermediate metabolizer is AS 1, "lower dose", or AS 1.5,
"usual dose"), the match lists every possibility: the card says what each means and that
the genotype or activity score decides. Such a result is never silent.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.trace import Trace
from ..genomics.gene_decision import GeneResult
from ..knowledge.loader import Knowledge
from ..knowledge.models import SILENT_ACTIONS, Recommendation
from .medications import IdentifiedDrug

Span = tuple[float, float | None] | None


@dataclass(frozen=True)
class Match:
    drug: IdentifiedDrug
    recommendation: Recommendation
    results: tuple[GeneResult, ...]
    #: rows the result may fall in when they disagree (``recommendation`` is the most severe)
    possible: tuple[Recommendation, ...] = ()
    #: with phenoconversion: would the genotype alone have alerted? (None: no interaction)
    genetic_alerts: bool | None = None
    #: the order's dose against the guideline's dose advice, for the card
    dose_text: str | None = None
    #: a tricyclic ordered at a low (pain) dose: the guideline's dose advice does not apply
    low_dose: bool = False
    #: the guideline's daily dose for this order (mg/day, low to high), where it gives one
    dose_target: tuple[float, float] | None = None

    @property
    def alerts(self) -> bool:
        if self.possible:
            return True
        return self.recommendation.action not in SILENT_ACTIONS


def score_span(fact: GeneResult, knowledge: Knowledge) -> tuple[float | None, Span]:
    """A result's activity score, or (None, the range of scores it stands for)."""
    if fact.score_range is not None:
        return None, fact.score_range
    if fact.activity_score is not None:
        return fact.activity_score, None
    return None, knowledge.band(fact.gene, fact.phenotype)


def match(
    drugs: list[IdentifiedDrug], facts: dict[str, GeneResult], knowledge: Knowledge, trace: Trace
) -> list[Match]:
    matches: list[Match] = []
    for identified in drugs:
        rows = knowledge.recommendations_for(identified.drug)
        if not rows:
            trace.add(
                "recommendations",
                f"{identified.drug}: no guideline recommendation covers this drug",
            )
            continue
        genes = sorted({g for r in rows for g in r.when})
        missing = [g for g in genes if g not in facts]
        unclear = [g for g in genes if g in facts and not facts[g].actionable]
        for gene in missing:
            trace.add("recommendations", f"{identified.drug}: no {gene} result for this patient")
        for gene in unclear:
            trace.add(
                "recommendations",
                f"{identified.drug}: {gene} result is indeterminate: no guideline row applies",
            )

        usable = {g: score_span(facts[g], knowledge) for g in genes if g not in missing + unclear}
        applicable = [r for r in rows if all(g in usable for g in r.when)]
        hits = [
            r
            for r in applicable
            if all(c.matches(facts[g].phenotype, *usable[g]) for g, c in r.when.items())
        ]
        possible: tuple[Recommendation, ...] = ()
        if not hits and applicable:
            hits, possible = _spanned_rows(identified.drug, applicable, facts, knowledge, trace)
        if hits:
            most = max(len(r.when) for r in hits)
            hits = [r for r in hits if len(r.when) == most]
        elif applicable:
            trace.add(
                "recommendations",
                f"{identified.drug}: no row for "
                + ", ".join(
                    f"{g} {facts[g].phenotype}"
                    for g in sorted({g for r in applicable for g in r.when})
                ),
            )
        for row in hits:
            found = Match(identified, row, tuple(facts[g] for g in row.when), possible)
            verdict = "alert" if found.alerts else "no alert"
            trace.add(
                "recommendations",
                f"{identified.drug}: {row.id} ({row.action}, {row.strength}) -> {verdict}",
            )
            matches.append(found)
    return matches


_WEAKEST_FIRST = {"none": 0, "label": 1, "optional": 1, "moderate": 2, "strong": 3}


def _spanned_rows(
    drug: str,
    applicable: list[Recommendation],
    facts: dict[str, GeneResult],
    knowledge: Knowledge,
    trace: Trace,
) -> tuple[list[Recommendation], tuple[Recommendation, ...]]:
    """Rows a result without a single activity score may fall in (see the module's notes):
    ``([weakest], ())`` when they agree, ``([most severe], all of them)`` when they do not,
    ``([], ())`` when the result's range meets fewer than two rows."""
    spanned: list[Recommendation] = []
    for row in applicable:
        fits = True
        for gene, cond in row.when.items():
            fact = facts[gene]
            score, span = score_span(fact, knowledge)
            if score is None and span is not None and cond.activity_score_min is not None:
                high = cond.activity_score_max
                fits = (
                    fits
                    and cond.phenotype in (None, fact.phenotype)
                    and (high is None or span[0] <= high)
                    and (span[1] is None or span[1] >= cond.activity_score_min)
                )
            elif not cond.matches(fact.phenotype, score, span):
                fits = False
        if fits:
            spanned.append(row)
    if len(spanned) < 2:
        return [], ()
    ids = ", ".join(r.id for r in spanned)
    if len({r.action for r in spanned}) == 1:
        weakest = min(spanned, key=lambda r: _WEAKEST_FIRST[r.strength])
        trace.add(
            "recommendations",
            f"{drug}: no single activity score; rows {ids} agree ({weakest.action}); the "
            f"weakest strength ({weakest.strength}) is shown",
        )
        return [weakest], ()
    severe = max(spanned, key=lambda r: (_MOST_SEVERE_LAST[r.action], _WEAKEST_FIRST[r.strength]))
    trace.add(
        "recommendations",
        f"{drug}: no single activity score; rows {ids} give different advice: one card lists "
        "each possibility (the genotype or activity score decides)",
    )
    spanned.sort(key=lambda r: [c.activity_score_min or 0.0 for c in r.when.values()])
    return [severe], tuple(spanned)


_MOST_SEVERE_LAST = {
    "no-recommendation": 0,
    "standard": 1,
    "caution": 2,
    "adjust-dose": 3,
    "alternative": 4,
    "avoid": 5,
}
