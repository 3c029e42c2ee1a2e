"""Phenoconversion: a CYP2D6 inhibitor the patient takes changes the phenotype that acts.

The patient's other medications (active orders on file, and the other unsigned orders of the
same ordering session) are searched for FDA's CYP2D6 inhibitors
(``knowledge/interactions/cyp2d6_inhibitors.json``). The CYP2D6 activity score is multiplied
by 0 for a strong and by 0.5 for a moderate inhibitor (Borges et al. 2010; the convention
clinical PGx programmes use) and the functional phenotype read from CPIC's bands (PM 0,
IM 0 < AS < 1.25, NM 1.25-2.25, UM > 2.25). A phenotype reported without its score stands for
its band: the functional phenotype is called only when the whole band lands in one.

Only orders that are in force count: status active or draft, and a validity or bounds period
that has not ended. With no CYP2D6 result on file nothing is inferred: the EHR's own
drug-interaction checker handles the interaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ..core.trace import Trace
from ..core.wording import number, with_article
from ..fhir.hook_context import DraftOrder
from ..fhir.values import as_dict, as_str, objects, parse_date, texts
from ..genomics.gene_decision import GeneResult
from ..genomics.star_alleles import INDETERMINATE
from ..knowledge.loader import Knowledge
from .medications import MAX_TEXT_READ, RXNORM_SYSTEMS, negated_at
from .recommendations import score_span

GENE = "CYP2D6"
IN_FORCE = frozenset({"active", "draft"})


@dataclass(frozen=True)
class InhibitorUse:
    name: str  # ingredient, e.g. "paroxetine"
    strength: str  # "strong" or "moderate"
    where: str  # "active medication" or "order in this session"


def functional_phenotype(score: float) -> str:
    """CPIC's CYP2D6 bands on a continuous score (a multiplied score can fall between the
    steps of a diplotype's)."""
    if score <= 0:
        return "Poor Metabolizer"
    if score < 1.25:
        return "Intermediate Metabolizer"
    if score <= 2.25:
        return "Normal Metabolizer"
    return "Ultrarapid Metabolizer"


def in_force(resource: dict[str, Any], now: datetime | None = None) -> bool:
    """Is a medication order active or draft, and not past the end of its period?"""
    if as_str(resource.get("status")) not in IN_FORCE:
        return False
    now = now or datetime.now(UTC)
    ends = [
        as_dict(as_dict(resource.get("dispenseRequest")).get("validityPeriod")).get("end"),
        resource.get("dateEnded"),  # DSTU2
    ]
    for dosage in objects(resource.get("dosageInstruction")):
        repeat = as_dict(as_dict(dosage.get("timing")).get("repeat"))
        ends.append(as_dict(repeat.get("boundsPeriod")).get("end"))
    for end in ends:
        parsed = parse_date(end) if isinstance(end, str) else None
        if parsed is not None and parsed < now:
            return False
    return True


def find_inhibitors(
    orders: list[tuple[DraftOrder, str]], knowledge: Knowledge, trace: Trace
) -> list[InhibitorUse]:
    """CYP2D6 inhibitors among medication orders in force (each with where it came from),
    whatever shape names the medication (as ``DraftOrder.medication`` reads it: inline, a
    contained or a sent Medication, a reference's display)."""
    table = knowledge.inhibitors
    found: dict[str, InhibitorUse] = {}
    for order, where in orders:
        resource = order.resource
        if not order.is_medication_order:
            continue
        name = _inhibitor_named(order, knowledge)
        if name is None:
            continue
        ref = f"{resource.get('resourceType')}/{as_str(resource.get('id')) or '?'}"
        if not in_force(resource):
            trace.add(
                "interactions",
                f"{ref} ({name}) not counted: status '{as_str(resource.get('status'))}' "
                "or its period has ended",
            )
            continue
        use = InhibitorUse(name, table.inhibitors[name].strength, where)
        trace.add("interactions", f"{ref}: {name}, a {use.strength} CYP2D6 inhibitor ({where})")
        found.setdefault(name, use)
    return sorted(found.values(), key=lambda u: (table.multipliers[u.strength], u.name))


def _inhibitor_named(order: DraftOrder, knowledge: Knowledge) -> str | None:
    concept = as_dict(order.coded_medication)
    by_code = knowledge.inhibitor_by_rxcui
    for coding in objects(concept.get("coding")):
        if as_str(coding.get("system")) in RXNORM_SYSTEMS:
            code = as_str(coding.get("code"))
            if code in by_code:
                return by_code[code]
    display = as_str(as_dict(order.resource.get("medicationReference")).get("display"))
    for text in [*texts(concept), display]:
        named = _inhibitor_in(text[:MAX_TEXT_READ], knowledge) if text else None
        if named is not None:
            return named
    return None


@lru_cache(maxsize=4096)
def _inhibitor_in(text: str, knowledge: Knowledge) -> str | None:
    """The CYP2D6 inhibitor a medication text names, not negated ("non-paroxetine"), if any.
    The same texts come back call after call (the drug being ordered, the patient's list), so
    each is searched once (4,096 texts of at most ``MAX_TEXT_READ`` characters: 2 million)."""
    lowered = text.lower()
    for found in knowledge.inhibitor_names.finditer(lowered):
        if not negated_at(lowered, found.start(), found.end()):
            return knowledge.inhibitor_named[found.group(0)]  # "paxil" -> paroxetine
    return None


def phenoconvert(
    fact: GeneResult, inhibitors: list[InhibitorUse], knowledge: Knowledge, trace: Trace
) -> GeneResult:
    """The CYP2D6 result as it acts while the patient takes ``inhibitors``."""
    if not inhibitors or fact.gene != GENE or not fact.actionable:
        return fact
    use = inhibitors[0]  # the strongest
    factor = knowledge.inhibitors.multipliers[use.strength]
    score, span = score_span(fact, knowledge)
    if score is not None:
        low, high = score * factor, score * factor
        exact: float | None = low
    else:
        if span is None:
            return fact
        low = span[0] * factor
        high = span[1] * factor if span[1] is not None else (0.0 if factor == 0 else None)
        exact = low if high == low else None
    phenotype = functional_phenotype(low)
    if high is None or functional_phenotype(high) != phenotype:
        trace.add(
            "interactions",
            f"{GENE}: with {use.name} ({use.strength}) the activity score would be "
            f"{number(low)}–{number(high) if high is not None else 'higher'}: "
            "more than one phenotype, so the genetic result is used",
        )
        return replace(
            fact,
            notes=(
                *fact.notes,
                f"the patient takes {use.name}, a {use.strength} CYP2D6 inhibitor; its effect "
                "on this result cannot be called, so the genetic phenotype is used",
            ),
        )
    if phenotype == fact.phenotype:
        trace.add(
            "interactions",
            f"{GENE}: {use.name} ({use.strength}) leaves the phenotype {phenotype.lower()}",
        )
        return fact
    score_text = number(exact) if exact is not None else None
    trace.add(
        "interactions",
        f"{GENE}: {fact.phenotype.lower()} by genotype, functionally {phenotype.lower()} while "
        f"taking {use.name} (activity score x{factor:g})",
    )
    return replace(
        fact,
        phenotype=phenotype,
        activity_score=exact,
        activity_score_text=score_text,
        score_range=None if exact is not None else (low, high),
        genetic_phenotype=fact.phenotype,
        phenoconverted_by=tuple(
            f"{u.name} ({u.strength} inhibitor, {u.where})" for u in inhibitors
        ),
        notes=(
            *fact.notes,
            f"{GENE} {fact.phenotype.lower()} by {fact.kind}, functionally "
            f"{with_article(phenotype.lower())} while taking {use.name} ({use.strength} CYP2D6 "
            f"inhibitor, {use.where}; activity score x{factor:g}, Borges et al. 2010)",
        ),
    )


__all__ = ["INDETERMINATE", "InhibitorUse", "find_inhibitors", "in_force", "phenoconvert"]
