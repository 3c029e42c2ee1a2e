"""Match identified drugs against the patient's gene results and the guideline rows.

For each drug, the rows whose genes all have an actionable result are candidates; the
rows naming the most genes win (a two-gene amitriptyline row beats a one-gene row when
both results exist). A drug or gene the knowledge does not cover matches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .genomic_facts import GeneResult
from .knowledge import SILENT_ACTIONS, Knowledge, Recommendation
from .medications import IdentifiedDrug
from .trace import Trace


@dataclass(frozen=True)
class Match:
    drug: IdentifiedDrug
    recommendation: Recommendation
    results: tuple[GeneResult, ...]

    @property
    def alerts(self) -> bool:
        return self.recommendation.action not in SILENT_ACTIONS


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
                "recommendations", f"{identified.drug}: {gene} result is indeterminate: no alert"
            )

        applicable = [r for r in rows if all(g in facts and facts[g].actionable for g in r.when)]
        hits = [
            r
            for r in applicable
            if all(
                c.matches(
                    facts[g].phenotype,
                    facts[g].activity_score,
                    knowledge.band(g, facts[g].phenotype),
                )
                for g, c in r.when.items()
            )
        ]
        if not hits and applicable:
            hits = _agreeing_rows(identified.drug, applicable, facts, knowledge, trace)
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
            found = Match(identified, row, tuple(facts[g] for g in row.when))
            verdict = "alert" if found.alerts else "no alert"
            trace.add(
                "recommendations",
                f"{identified.drug}: {row.id} ({row.action}, {row.strength}) -> {verdict}",
            )
            matches.append(found)
    return matches


_WEAKEST_FIRST = {"none": 0, "optional": 1, "moderate": 2, "strong": 3}


def _agreeing_rows(
    drug: str,
    applicable: list[Recommendation],
    facts: dict[str, GeneResult],
    knowledge: Knowledge,
    trace: Trace,
) -> list[Recommendation]:
    """A phenotype reported without its activity score can span rows keyed by score: a CYP2D6
    intermediate metabolizer is AS 0.25-1, which CPIC splits into 0.25-0.5 and 0.75-1 for
    nortriptyline. When all the rows it spans give the same action and together cover its
    band, that action applies, with the weakest of their strengths; otherwise none does."""
    spanned: list[Recommendation] = []
    unscored: dict[str, tuple[float, float]] = {}
    for row in applicable:
        fits = True
        for gene, cond in row.when.items():
            fact = facts[gene]
            band = knowledge.band(gene, fact.phenotype)
            if fact.activity_score is None and cond.activity_score_min is not None:
                if band is None or band[1] is None or cond.phenotype not in (None, fact.phenotype):
                    fits = False
                    continue
                high = cond.activity_score_max if cond.activity_score_max is not None else band[1]
                fits = fits and cond.activity_score_min <= band[1] and high >= band[0]
                unscored[gene] = (band[0], band[1])
            elif not cond.matches(fact.phenotype, fact.activity_score, band):
                fits = False
        if fits:
            spanned.append(row)
    if len(spanned) < 2 or len({r.action for r in spanned}) != 1:
        return []
    for gene, (low, high) in unscored.items():
        conds = [r.when[gene] for r in spanned]
        covered_low = min(c.activity_score_min or 0.0 for c in conds)
        highs = [c.activity_score_max for c in conds]
        covered_high = None if None in highs else max(h for h in highs if h is not None)
        if covered_low > low or (covered_high is not None and covered_high < high):
            return []
    weakest = min(spanned, key=lambda r: _WEAKEST_FIRST[r.strength])
    trace.add(
        "recommendations",
        f"{drug}: no activity score; rows {', '.join(r.id for r in spanned)} agree "
        f"({weakest.action}); the weakest strength ({weakest.strength}) is shown",
    )
    return [weakest]
