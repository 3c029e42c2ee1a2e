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
