"""Phenoconversion: an enzyme inhibitor the patient takes changes the phenotype that acts.

The patient's medications, wherever the chart records them (``medication_history``: orders
on file, active or on hold; the medication list, MedicationStatement; the other unsigned
orders of the same ordering session), are searched for the inhibitors of each enzyme with an
inhibitor table (``knowledge/interactions/<gene>_inhibitors.json``: CYP2D6, CYP2C9,
CYP2C19; the genes are the knowledge's, not this module's), by RxNorm code, by the ATC or
SNOMED CT / dm+d codes of ``knowledge/drug_codes.json`` and ``snomed_products.json``, else by
name. For a gene scored by activity
score the score is multiplied by the table's factor for the strongest inhibitor (CYP2D6: 0
for a strong and 0.5 for a moderate inhibitor, Borges et al. 2010, the convention clinical
PGx programmes use) and the functional phenotype read from the gene's CPIC bands
(``genes/<GENE>.json``); a score between two bands goes toward normal function, but the
normal band is closed (``rules/phenotype_order.json``): for CYP2D6, PM 0, IM 0 < AS < 1.25,
NM 1.25-2.25, UM > 2.25. Where the gene's rows go by activity score (CYP2C9) and the
multiplied score falls between two bands (AS 1.5 halved: 0.75), the converted reading stands
for that gap (0.5-1): it may meet either row, and the match follows the more cautious and says
so. A phenotype reported without its score stands for its band: the
functional phenotype is called only when the whole band lands in one. For a gene without an
activity score (CYP2C19) the table names the functional phenotype per strength. Several
inhibitors of one enzyme: the strongest decides, and the card names them all.

A record counts while it is current (active, on hold, intended, draft, status unknown). One
that has ended counts only for an inhibitor whose label says its effect outlasts the last
dose (``lasts_after_stopping``: fluoxetine, about five weeks), until that time has passed
since the stop date, and the card gives the stop date; an inhibitor without it stops acting
when it is stopped. With no result for the gene on file nothing is inferred: the EHR's own
drug-interaction checker handles the interaction.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from ..core.trace import Trace
from ..core.wording import number, with_article
from ..fhir.hook_context import DraftOrder
from ..fhir.values import as_dict, as_str, objects, texts
from ..genomics.gene_decision import GeneResult
from ..genomics.star_alleles import INDETERMINATE
from ..knowledge.loader import Knowledge
from .medication_history import ON_FILE, MedicationHistory, MedicationUse, days_since
from .medications import MAX_TEXT_READ, RXNORM_SYSTEMS, named_in_codes, negated_at
from .recommendations import score_span

ACTIVE = "active medication"  # an active order on file, as the card has always said it
#: the strengths from the strongest (the first of a gene's inhibitors decides)
_ORDER = {"strong": 0, "moderate": 1}


@dataclass(frozen=True)
class InhibitorUse:
    name: str  # ingredient, e.g. "paroxetine"
    strength: str  # "strong" or "moderate"
    #: where the chart records it ("active medication", "medication list
    #: (MedicationStatement)", "ordered in this session"), or, for one stopped but still
    #: acting, the stop and how long it lasts
    where: str
    gene: str  # the enzyme it inhibits
    stopped: str | None = None  # the stop date, when stopped but still acting


def functional_phenotype(gene: str, score: float, knowledge: Knowledge) -> str | None:
    """The phenotype of a continuous activity score (a multiplied score can fall between the
    steps of a diplotype's), from the gene's CPIC bands: inside a band, that band; between
    two, the one nearer normal function, except that the normal band is closed (CYP2D6: PM 0,
    IM 0 < AS < 1.25, NM 1.25-2.25, UM > 2.25). None for a gene without bands."""
    table = knowledge.genes.get(gene)
    bands = sorted(table.phenotype_bands, key=lambda b: b.min) if table else []
    if not bands:
        return None
    if score <= bands[0].min:
        return bands[0].phenotype
    for i, band in enumerate(bands):
        if score >= band.min and (band.max is None or score <= band.max):
            return band.phenotype
        upper = bands[i + 1] if i + 1 < len(bands) else None
        if upper is not None and band.max is not None and band.max < score < upper.min:
            return _toward_normal(band.phenotype, upper.phenotype, knowledge)
    return bands[-1].phenotype


def _toward_normal(lower: str, upper: str, knowledge: Knowledge) -> str:
    """Of two neighbouring bands, the one a score between them belongs to."""
    low, high = knowledge.direction(lower), knowledge.direction(upper)
    if low is None or high is None:
        return lower  # not ordered: the lower activity (the more cautious for most drugs)
    if low[0] == 0:
        return upper  # the normal band is closed
    if high[0] == 0:
        return lower
    return lower if low[1] < high[1] else upper


def find_inhibitors(
    found: MedicationHistory,
    knowledge: Knowledge,
    trace: Trace,
    now: datetime | None = None,
    *,
    gene: str,
) -> list[InhibitorUse]:
    """The inhibitors of ``gene`` among the patient's medication records that act now:
    current ones, and ended ones whose lasting effect has not passed (see the module's
    notes), the strongest first. The trace says why each record naming one counts or not."""
    now = now or datetime.now(UTC)
    table = knowledge.interactions.get(gene)
    if table is None:
        return []
    counted: dict[str, InhibitorUse] = {}
    for use in found.uses:
        name = _inhibitor_named(use.record, knowledge)
        if name is None or name not in table.inhibitors:
            continue
        counts = _counted(use, name, gene, knowledge, trace, now)
        known = counted.get(name)
        # one use per inhibitor; one taken now says more than one stopped but still acting
        if counts is not None and (known is None or (known.stopped and not counts.stopped)):
            counted[name] = counts
    return sorted(counted.values(), key=lambda u: (_ORDER[u.strength], u.name))


def find_all(
    found: MedicationHistory,
    knowledge: Knowledge,
    trace: Trace,
    genes: frozenset[str] | set[str],
    now: datetime | None = None,
) -> dict[str, list[InhibitorUse]]:
    """``find_inhibitors`` for each of ``genes`` that has an inhibitor table."""
    return {
        gene: find_inhibitors(found, knowledge, trace, now, gene=gene)
        for gene in sorted(genes & knowledge.phenoconversion_genes)
    }


def _counted(
    use: MedicationUse, name: str, gene: str, knowledge: Knowledge, trace: Trace, now: datetime
) -> InhibitorUse | None:
    """The inhibitor ``use`` names, if it acts now (the trace says why or why not)."""
    strength = knowledge.interactions[gene].inhibitors[name].strength
    lasting = knowledge.interactions[gene].inhibitors[name].lasts_after_stopping
    said = f"{use.ref} ({name}, {use.source})"
    if use.state == "not counted":
        trace.add("interactions", f"{said} not counted: {use.why}")
        return None
    if use.state == "current":
        where = (
            ACTIVE
            if use.source == ON_FILE and use.status == "active"
            else use.source
            if use.status in ("active", "draft")
            else f"{use.source}, {use.why}"
        )
        trace.add("interactions", f"{said}: a {strength} {gene} inhibitor, {use.why}: counted")
        return InhibitorUse(name, strength, where, gene)
    if lasting is None:
        trace.add(
            "interactions",
            f"{said} not counted: {use.why}; stopping {name} ends its effect",
        )
        return None
    if use.ended is not None and use.ended + timedelta(days=lasting.days) <= now:
        ago = days_since(use.ended, now)
        trace.add(
            "interactions",
            f"{said} not counted: {use.why} {ago} days ago; its effect lasts "
            f"{lasting.text} ({lasting.days} days), now over",
        )
        return None
    when = (
        f"stopped {use.ended_text}" if use.ended_text else "stopped (the stop date is not recorded)"
    )
    ago_text = f" {days_since(use.ended, now)} days ago" if use.ended is not None else ""
    trace.add(
        "interactions",
        f"{said}: {use.why}{ago_text}; a {strength} {gene} inhibitor whose effect lasts "
        f"{lasting.text} after the last dose (label): counted",
    )
    return InhibitorUse(
        name,
        strength,
        f"{use.source}; {name} {when}: its inhibition lasts {lasting.text}",
        gene,
        stopped=use.ended_text or "not recorded",
    )


def _inhibitor_named(order: DraftOrder, knowledge: Knowledge) -> str | None:
    """The inhibitor a medication record names, whatever shape names it (as
    ``DraftOrder.medication`` reads it: inline, R5's concept, a contained or a sent
    Medication, a reference's display)."""
    concept = as_dict(order.medication)
    by_code = knowledge.inhibitor_by_rxcui
    for coding in objects(concept.get("coding")):
        if as_str(coding.get("system")) in RXNORM_SYSTEMS:
            code = as_str(coding.get("code"))
            if code in by_code:
                return by_code[code]
    for name in named_in_codes(concept, knowledge):  # ATC, SNOMED CT / dm+d, a site's codes
        if name in knowledge.inhibitor_ingredients:  # an inhibitor of any enzyme with a table
            return name
    for text in texts(concept):
        named = _inhibitor_in(text[:MAX_TEXT_READ], knowledge)
        if named is not None:
            return named
    return None


def _inhibitor_in(text: str, knowledge: Knowledge) -> str | None:
    """The inhibitor a medication text names, not negated ("non-paroxetine"), if any.
    The same texts come back call after call (the drug being ordered, the patient's list), so
    each is searched once (texts of at most ``MAX_TEXT_READ`` characters, 4,096 kept)."""
    answer: str | None = knowledge.remembered("inhibitor named").get(
        text, lambda: _inhibitor_named_in(text, knowledge)
    )
    return answer


def _inhibitor_named_in(text: str, knowledge: Knowledge) -> str | None:
    lowered = text.lower()
    for found in knowledge.inhibitor_names.finditer(lowered):
        if not negated_at(lowered, found.start(), found.end()):
            return knowledge.inhibitor_named[found.group(0)]  # "paxil" -> paroxetine
    return None


def phenoconvert(
    fact: GeneResult, inhibitors: list[InhibitorUse], knowledge: Knowledge, trace: Trace
) -> GeneResult:
    """A result while the patient takes ``inhibitors`` of its gene: a result with two readings,
    the genotype's and the functional (converted) phenotype, when the inhibitor changes the
    phenotype; each drug then follows the more severe advice (an interacting drug may add or
    raise advice, never lower or remove it). The result itself reads as the functional
    phenotype (``genetic_phenotype`` says the genotype's). Results that disagree
    (``readings``) are converted reading by reading."""
    table = knowledge.interactions.get(fact.gene)
    if not inhibitors or table is None or not fact.actionable:
        return fact
    inhibitors = [u for u in inhibitors if u.name in table.inhibitors]
    if not inhibitors:
        return fact
    readings: list[GeneResult] = []
    primary: GeneResult | None = None
    for reading in fact.all_readings:
        genetic, functional = _convert(reading, inhibitors, knowledge, trace)
        readings.append(genetic)
        if functional is not None:
            readings.append(functional)
        if primary is None:
            primary = functional or genetic
    assert primary is not None
    if len(readings) == 1:
        return readings[0]
    return replace(primary, readings=tuple(readings))


def _convert(
    fact: GeneResult, inhibitors: list[InhibitorUse], knowledge: Knowledge, trace: Trace
) -> tuple[GeneResult, GeneResult | None]:
    """One reading's (genetic reading, functional reading or None when unchanged)."""
    gene = fact.gene
    table = knowledge.interactions[gene]
    use = inhibitors[0]  # the strongest decides
    by = tuple(f"{u.name} ({u.strength} inhibitor, {u.where})" for u in inhibitors)
    taking = _and([u.name for u in inhibitors])
    if use.strength in table.phenotype_shifts:  # a gene without an activity score
        phenotype = table.phenotype_shifts[use.strength].get(fact.phenotype)
        exact, low, high, how = None, None, None, f"{use.strength} inhibitor"
        if phenotype is None:
            return _uncalled(fact, use, by, trace, "no rule for this phenotype"), None
    else:
        factor = table.multipliers[use.strength]
        how = f"activity score x{factor:g}"
        score, span = score_span(fact, knowledge)
        if score is not None:
            low, high = score * factor, score * factor
            exact = low
        else:
            if span is None:
                return fact, None
            low = span[0] * factor
            high = span[1] * factor if span[1] is not None else (0.0 if factor == 0 else None)
            exact = low if high == low else None
        phenotype = functional_phenotype(gene, low, knowledge)
        if (
            phenotype is None
            or high is None
            or functional_phenotype(gene, high, knowledge) != phenotype
        ):
            trace.add(
                "interactions",
                f"{gene}: with {use.name} ({use.strength}) the activity score would be "
                f"{number(low)}–{number(high) if high is not None else 'higher'}: "
                "more than one phenotype, so the genetic result is used",
            )
            return _uncalled(fact, use, by, trace, None), None
        gap = _gap(gene, exact, knowledge) if exact is not None else None
        if gap is not None:  # between two steps of the gene's rows: it may fall in either
            exact, low, high = None, gap[0], gap[1]
        if phenotype == fact.phenotype and _same_rows(fact, (exact, low, high), knowledge):
            trace.add(
                "interactions",
                f"{gene}: {use.name} ({use.strength}) leaves the phenotype {phenotype.lower()}"
                " and the rows it meets",
            )
            return fact, None
    if phenotype == fact.phenotype and use.strength in table.phenotype_shifts:
        trace.add(
            "interactions",
            f"{gene}: {use.name} ({use.strength}) leaves the phenotype {phenotype.lower()}",
        )
        return fact, None
    score_text = number(exact) if exact is not None else None
    others = [u.name for u in inhibitors[1:]]
    more = f" (the strongest; also {_and(others)})" if others else ""
    trace.add(
        "interactions",
        f"{gene}: {fact.phenotype.lower()} by genotype, functionally {phenotype.lower()} while "
        f"taking {use.name}{more} ({how}); both are judged and each drug follows the more "
        "severe advice",
    )
    method = f"{how}, {table.cited}"
    note = (
        f"{gene} {fact.phenotype.lower()} by {fact.kind}, functionally "
        f"{with_article(phenotype.lower())} while taking {taking} ({gene} inhibitors; the "
        f"strongest, {use.name}, {use.strength}, decides: {method})"
        if len(inhibitors) > 1
        else f"{gene} {fact.phenotype.lower()} by {fact.kind}, functionally "
        f"{with_article(phenotype.lower())} while taking {use.name} ({use.strength} {gene} "
        f"inhibitor, {use.where}; {method})"
    )
    genetic = replace(
        fact,
        phenoconverted_by=by,
        functional_phenotype=phenotype,
        notes=(*fact.notes, note),
    )
    functional = replace(
        fact,
        phenotype=phenotype,
        activity_score=exact,
        activity_score_text=score_text,
        score_range=None if exact is not None or low is None else (low, high),
        genetic_phenotype=fact.phenotype,
        phenoconverted_by=by,
        notes=(*fact.notes, note),
    )
    return genetic, functional


def _gap(gene: str, score: float, knowledge: Knowledge) -> tuple[float, float] | None:
    """The two band edges a score lies between, when it lies in no band of the gene (CYP2C9
    activity score 1.5 halved: 0.75, between poor metabolizer 0-0.5 and AS 1): a reading that
    may take the advice of either side, and the card says so (never the milder alone)."""
    table = knowledge.genes.get(gene)
    bands = sorted(table.phenotype_bands, key=lambda b: b.min) if table else []
    for below, above in itertools.pairwise(bands):
        if below.max is not None and below.max < score < above.min:
            return below.max, above.min
    return None


def _same_rows(
    fact: GeneResult,
    after: tuple[float | None, float | None, float | None],
    knowledge: Knowledge,
) -> bool:
    """Does the converted score meet the same activity-score rows as the genetic one (rows
    keyed by score, CYP2C9's and nortriptyline's, can differ within one phenotype)?"""
    exact, low, high = after
    span = None if exact is not None or low is None else (low, high)
    before = score_span(fact, knowledge)
    return all(
        c.matches(fact.phenotype, *before) == c.matches(fact.phenotype, exact, span)
        for c in knowledge.score_conditions.get(fact.gene, ())
    )


def _uncalled(
    fact: GeneResult, use: InhibitorUse, by: tuple[str, ...], trace: Trace, why: str | None
) -> GeneResult:
    """The genetic reading only, noting an inhibitor whose effect cannot be called."""
    if why:
        trace.add(
            "interactions",
            f"{fact.gene}: {use.name} ({use.strength}): {why}, so the genetic result is used",
        )
    return replace(
        fact,
        phenoconverted_by=by,
        notes=(
            *fact.notes,
            f"the patient takes {use.name}, a {use.strength} {fact.gene} inhibitor; its effect "
            "on this result cannot be called, so the genetic phenotype is used",
        ),
    )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


__all__ = ["INDETERMINATE", "InhibitorUse", "find_all", "find_inhibitors", "phenoconvert"]
