"""Deciding one phenotype per gene (or HLA marker) from all of a patient's findings.

Genes do not change, so the rules favour the most informative definite result, and results
that disagree are shown, never resolved silently:

1. **A genotype on file decides**, re-interpreted with today's CPIC tables. A lab-reported
   phenotype that a former CPIC rule gives for that genotype (an outdated label such as
   "Extensive metabolizer" for ``*1/*4``, an intermediate metabolizer since 2019; see
   ``former_rules``) is shown beside it.
2. Without a definite genotype, the reported phenotype decides (pre-2019 wording is mapped
   to today's term and the card says the lab used it).
3. Among definite results of the same kind, the newest decides. An older result that
   disagrees is mentioned when a former rule explains the difference; one exception to
   rule 1: a CYP2D6 genotype that states no copy number and a later result that finds a
   duplication (a reported ultrarapid metabolizer, or the same diplotype with copies): the
   later test counted copies; it decides.
4. **A disagreement nothing explains is a discordance** (``*1/*1`` and a later "poor
   metabolizer"; ultrarapid and normal on one day): the result carries each reading
   (``readings``) and the results behind them (``disagreeing``); the recommendation follows
   the riskier reading and the card says that the results disagree. An amended or corrected
   result issued after the others of its date replaces them (no discordance).
5. **An indeterminate or failed newer result does not erase an older definite one**: the
   older result stands and the card mentions the newer one.
6. Two haplotype results of one date make a diplotype (an HLA marker: present if either
   copy carries it, absent only when both copies are typed without it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from ..core.trace import Trace
from ..core.wording import with_article
from ..knowledge.loader import Knowledge
from . import hla
from .former_rules import former_phenotypes, relabelling, same_call
from .result_reading import Finding, FindingKind, scored
from .star_alleles import INDETERMINATE, score_diplotype

_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Reported:
    """One result of a gene whose results disagree, as the card lists it."""

    observation: str
    kind: FindingKind
    value: str  # what the lab reported: "*1/*1", "Poor metabolizer"
    phenotype: str  # today's reading of it
    activity_score_text: str | None = None
    date_text: str | None = None
    performer: str | None = None


@dataclass(frozen=True)
class GeneResult:
    """The phenotype the service acts on for one gene, and where it came from."""

    gene: str
    phenotype: str
    observation: str
    kind: FindingKind
    date_text: str | None = None
    diplotype: str | None = None
    activity_score: float | None = None
    activity_score_text: str | None = None
    #: the activity scores the result allows when it has no single one (unknown copy number)
    score_range: tuple[float, float | None] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: the lab's own phenotype label when today's rules read the result differently
    reinterpreted_from: str | None = None
    #: set when an interacting drug changes the phenotype that acts (phenoconversion)
    genetic_phenotype: str | None = None
    #: the interacting drugs, on both readings: the functional one (``genetic_phenotype``
    #: set) and the genetic one (``functional_phenotype`` set, when the effect can be called)
    phenoconverted_by: tuple[str, ...] = ()
    #: on the genetic reading of a result an interacting drug converts: what it converts to
    functional_phenotype: str | None = None
    #: the readings the inputs leave open (discordant results; the genotype and the
    #: phenotype an interacting drug gives), each a result of its own, the preferred first;
    #: empty when the result is settled. Recommendations follow the most severe reading.
    readings: tuple[GeneResult, ...] = ()
    #: the results that disagree (a discordance), for the card; empty when none do
    disagreeing: tuple[Reported, ...] = ()
    #: who reported the deciding result (the lab), as its Observation names it, if it does
    performer: str | None = None

    @property
    def actionable(self) -> bool:
        return self.phenotype != INDETERMINATE

    @property
    def discordant(self) -> bool:
        return bool(self.disagreeing)

    @property
    def all_readings(self) -> tuple[GeneResult, ...]:
        return self.readings or (self,)


def decide(findings: list[Finding], knowledge: Knowledge | None = None) -> GeneResult:
    """One result for a gene from all of its findings (see the module's rules). Without
    ``knowledge`` no former CPIC rule explains a disagreement."""
    # newest first; within a date a fixed order (the answer never depends on the input's)
    newest_first = sorted(findings, key=lambda f: (f.date or _OLDEST, f.observation), reverse=True)
    definite = [f for f in newest_first if f.phenotype != INDETERMINATE]
    # HLA markers: typing and presence answers are equal witnesses (the newest decides)
    genotypes = [f for f in definite if f.kind == "genotype" and "*" not in f.gene]
    pool = genotypes or definite
    if not pool:
        top = newest_first[0]
        return _result(top, INDETERMINATE, notes=[top.reason] if top.reason else [])

    notes: list[str] = []
    settled: list[Finding] = []  # results whose difference from the deciding one is explained
    newer = _newer_report(definite, genotypes, knowledge)
    if newer is not None:  # a later test (e.g. with copy numbers) overrules an older genotype
        older_genotype = genotypes[0]
        pool = [f for f in definite if f.kind != "genotype"]
        settled += [g for g in genotypes if _counted_no_copies(g, newer, knowledge)]
        # and the reports of those tests that read the same (they could not count copies)
        settled += [
            f
            for f in definite
            if f.kind != "genotype"
            and any(
                same_call(f.phenotype, g.phenotype) and (f.date or _OLDEST) <= (g.date or _OLDEST)
                for g in settled
            )
        ]
        notes.append(
            f"an older genotype ({older_genotype.date_text or 'undated'}) "
            f"{older_genotype.diplotype} reads as {older_genotype.phenotype.lower()} under "
            f"current CPIC rules; the newer result ({newer.date_text}) is used"
        )
    top = pool[0]
    same_date = [f for f in pool if f.date == top.date]
    replaced = _revision(same_date)
    if replaced is not None:  # an amended or corrected result replaces its date's others
        notes.append(
            f"{replaced.observation} was amended or corrected after the other results of its "
            "date: it replaces them"
        )
        settled += [f for f in same_date if f is not replaced]
        same_date = [replaced]
    top = next((f for f in same_date if f.activity_score is not None), same_date[0])
    phenotype = top.phenotype

    agreeing: list[Finding] = []
    discordant: list[Finding] = []
    reinterpreted_from = None
    for f in definite:
        if f is top or any(f is s for s in settled):
            continue
        if _agrees(f, top):
            agreeing.append(f)
            if _is_genotype(top) and f.kind == "phenotype" and f.legacy:
                notes.append(_reinterpreted(f, top))
                reinterpreted_from = reinterpreted_from or f.reported_as or f.phenotype
            continue
        explanation = _explanation(f, top, knowledge)
        if explanation is None:
            discordant.append(f)
            continue
        notes.append(explanation)
        if _is_genotype(top) and f.kind == "phenotype":
            reinterpreted_from = reinterpreted_from or f.reported_as or f.phenotype
    if not _is_genotype(top) and top.legacy:
        notes.append(
            f"the lab used pre-2019 wording ('{top.reported_as}'), read as today's "
            f"{top.phenotype.lower()}; a genotype would confirm it under current CPIC rules"
        )
    if top.note:
        notes.append(top.note)
    if top.likely and phenotype == top.phenotype:
        notes.append(
            f"the lab reported '{top.reported_as or top.likely}', CPIC's term for a phenotype "
            f"assigned with less certainty: the advice for {with_article(phenotype.lower())} "
            "applies"
        )
    newer_unclear = [
        f
        for f in newest_first
        if f.phenotype == INDETERMINATE and (f.date or _OLDEST) > (top.date or _OLDEST)
    ]
    notes.extend(
        f"a newer result ({f.date_text or 'undated'}) could not be used ({f.reason or 'no value'});"
        f" the earlier result stands, as genes do not change"
        for f in newer_unclear[:2]
    )
    result = _result(top, phenotype, notes=notes, reinterpreted_from=reinterpreted_from)
    if not discordant:
        return result
    return _discordance(result, top, agreeing, discordant)


def _discordance(
    result: GeneResult, top: Finding, agreeing: list[Finding], discordant: list[Finding]
) -> GeneResult:
    """``result`` with the readings its disagreeing results leave open: the deciding
    result's first, then one per other phenotype (and activity score), newest first."""
    disagreeing = tuple(_reported(f) for f in [top, *agreeing, *discordant])
    readings = [replace(result, disagreeing=disagreeing)]
    for f in discordant:
        if any(_agrees(f, _as_finding(r)) for r in readings):
            continue
        readings.append(
            replace(
                _result(f, f.phenotype, notes=list(result.notes)),
                disagreeing=disagreeing,
            )
        )
    return replace(readings[0], readings=tuple(readings))


def _as_finding(r: GeneResult) -> Finding:
    return Finding(
        r.gene,
        r.kind,
        r.phenotype,
        r.observation,
        activity_score=r.activity_score,
        activity_score_text=r.activity_score_text,
        score_range=r.score_range,
    )


def _is_genotype(f: Finding) -> bool:
    return f.kind == "genotype" and "*" not in f.gene


def _agrees(f: Finding, top: Finding) -> bool:
    """The same call: one phenotype (CPIC's "Likely" aside) and, where both give a single
    activity score, the same score."""
    if not same_call(f.phenotype, top.phenotype):
        return False
    if _exact_score(f) is None or _exact_score(top) is None:
        return True
    return f.activity_score == top.activity_score


def _exact_score(f: Finding) -> float | None:
    if f.score_range is not None or (f.activity_score_text or "").startswith("≥"):
        return None
    return f.activity_score


def _explanation(f: Finding, top: Finding, knowledge: Knowledge | None) -> str | None:
    """Why ``f`` disagrees with the deciding result ``top`` (a note for the card), when a
    former CPIC rule or a test that counted copies explains it; None: a discordance."""
    if _is_genotype(top) and f.kind == "phenotype" and knowledge is not None:
        former = former_phenotypes(knowledge, top.gene, top.diplotype or "")
        if any(same_call(f.phenotype, p) for p in former):
            return _reinterpreted(f, top)
    if _is_genotype(top) and _is_genotype(f) and _counted_no_copies(f, top, knowledge):
        return (
            f"an older genotype ({f.date_text or 'undated'}) {f.diplotype} stated no copy "
            f"number; the newer result ({top.date_text}) counted copies and is used"
        )
    older = (f.date or _OLDEST) < (top.date or _OLDEST)
    if not _is_genotype(top) and not _is_genotype(f) and older and knowledge is not None:
        rule = relabelling(knowledge, top.gene, f.phenotype, top.phenotype)
        if rule is not None:
            return (
                f"an older result ({f.date_text or 'undated'}) said {_label(f)}; CPIC's rules "
                f"then ({rule.in_use}) gave that label to results now read as "
                f"{with_article(top.phenotype.lower())}"
            )
    return None


def _reinterpreted(f: Finding, top: Finding) -> str:
    when = f" in {f.date_text[:4]}" if f.date_text else ""
    label = f.reported_as or f.phenotype
    wording = " (pre-2019 wording)" if f.legacy else ""
    return (
        f"reported by the lab as '{label}'{wording}{when}; under current CPIC "
        f"rules {top.diplotype} is {with_article(top.phenotype.lower())}"
    )


def _counted_no_copies(older: Finding, newer: Finding, knowledge: Knowledge | None) -> bool:
    """An older genotype of a copy-number gene (CYP2D6) without a copy number, and a later
    result that found a duplication (a reported ultrarapid metabolizer, or the same diplotype
    with copies)."""
    if not _copy_number_gene(older.gene, knowledge) or older.date is None or newer.date is None:
        return False
    if _states_copies(older.diplotype or "") or newer.date.date() <= older.date.date():
        return False
    if not _is_genotype(newer):
        return newer.phenotype == _ULTRARAPID and not newer.legacy
    return _without_copies(newer.diplotype or "") == (older.diplotype or "") and (
        newer.diplotype != older.diplotype
    )


def _without_copies(diplotype: str) -> str:
    return "/".join(h.split("x")[0] for h in diplotype.split("/"))


def _reported(f: Finding) -> Reported:
    if _is_genotype(f) or f.kind == "haplotype":
        value = f.diplotype or f.phenotype
    else:
        value = f.reported_as or f.diplotype or f.phenotype
    return Reported(
        f.observation,
        f.kind,
        value,
        f.phenotype,
        f.activity_score_text,
        f.date_text,
        f.performer,
    )


def _copy_number_gene(gene: str, knowledge: Knowledge | None) -> bool:
    """Genes whose copies a genotype may not count (``genes/<GENE>.json`` ``copy_number``):
    a later test that reports an ultrarapid metabolizer where an older genotype stated no copy
    number has found a duplication. Without knowledge, none."""
    return knowledge is not None and knowledge.copy_number_gene(gene)


_ULTRARAPID = "Ultrarapid Metabolizer"


def _newer_report(
    definite: list[Finding], genotypes: list[Finding], knowledge: Knowledge | None
) -> Finding | None:
    """A reported ultrarapid phenotype, of a later day than the newest genotype, where that
    genotype states no copy number (CYP2D6 *1/*1 in 2019, ultrarapid in 2024: a test that
    counts gene copies found a duplication). Any other disagreement leaves the genotype to
    decide, read with today's tables (outdated labels, tests that saw less)."""
    if not genotypes:
        return None
    genotype = genotypes[0]
    if (
        not _copy_number_gene(genotype.gene, knowledge)
        or genotype.date is None
        or genotype.phenotype == _ULTRARAPID
        or _states_copies(genotype.diplotype or "")
    ):
        return None
    for f in definite:
        if f.kind != "genotype" and f.date is not None and not f.legacy:
            later = f.date.date() > genotype.date.date()
            return f if later and f.phenotype == _ULTRARAPID else None
    return None


def _states_copies(diplotype: str) -> bool:
    """Does a diplotype say how many gene copies there are (xN, ≥3, a tandem, *5)?"""
    text = diplotype.lower()
    return any(mark in text for mark in ("x", "×", "≥", "+", "*5"))


def _revision(same_date: list[Finding]) -> Finding | None:
    """The one amended or corrected result issued last among results of one date that
    disagree (None when they agree, or when it cannot be told)."""
    if len({(f.phenotype, f.activity_score) for f in same_date}) < 2:
        return None
    revised = sorted((f for f in same_date if f.revised), key=lambda f: f.revised or _OLDEST)
    if not revised or (len(revised) > 1 and revised[-1].revised == revised[-2].revised):
        return None
    return revised[-1]


def _label(f: Finding) -> str:
    genotype = f.kind == "genotype" and f.diplotype
    label = f"{f.diplotype} ({f.phenotype})" if genotype else f.phenotype
    score = f.activity_score_text
    if score is None and f.activity_score is not None:
        score = f"{f.activity_score:g}"
    return f"{label}, activity score {score}" if score is not None else label


def _result(
    top: Finding, phenotype: str, *, notes: list[str], reinterpreted_from: str | None = None
) -> GeneResult:
    return GeneResult(
        gene=top.gene,
        phenotype=phenotype,
        observation=top.observation,
        kind=top.kind,
        date_text=top.date_text,
        diplotype=top.diplotype,
        activity_score=top.activity_score,
        activity_score_text=top.activity_score_text,
        score_range=top.score_range,
        notes=tuple(notes),
        reinterpreted_from=reinterpreted_from,
        performer=top.performer,
    )


def combine_haplotypes(
    haplotypes: list[Finding], findings: list[Finding], knowledge: Knowledge, trace: Trace
) -> list[Finding]:
    """Two haplotype results of a gene and date make a diplotype, unless a genotype says it."""
    out = []
    groups: dict[tuple[str, datetime | None], list[Finding]] = {}
    for h in haplotypes:
        groups.setdefault((h.gene, h.date), []).append(h)
    for (gene, date), group in sorted(groups.items(), key=lambda kv: kv[0][0]):
        if any(
            f.gene == gene
            and f.kind == "genotype"
            and f.date == date
            and f.phenotype != INDETERMINATE
            for f in findings
        ):
            continue  # a readable genotype of the same date already says it
        refs = "+".join(h.observation for h in group)
        # (indeterminate until the copies settle it: a copy's own status is not the gene's)
        base = replace(
            group[0], kind="genotype", observation=refs, diplotype=None, phenotype=INDETERMINATE
        )
        if "*" in gene:  # an HLA marker: each haplotype is one copy
            out.append(_pool_hla_copies(gene, group, base, trace))
            continue
        alleles = [h.diplotype for h in group if h.diplotype]
        table = knowledge.genes.get(gene)
        if len(group) != 2 or len(alleles) != 2 or table is None:
            reason = (
                f"{len(group)} haplotype result(s); a diplotype needs exactly two"
                if table
                else f"no allele table for {gene}"
            )
            trace.add("results", f"{refs} ({gene} haplotypes): no usable result: {reason}")
            out.append(replace(base, reason=reason))
            continue
        result = score_diplotype("/".join(alleles), table)
        trace.add(
            "results",
            f"{refs} ({gene} haplotypes {result.diplotype}) -> {result.phenotype}"
            + (f": {result.reason}" if result.reason else ""),
        )
        out.append(scored(base, result))
    return out


def _pool_hla_copies(marker: str, group: list[Finding], base: Finding, trace: Trace) -> Finding:
    """Positive if any copy carries the marker; negative only when both copies are typed
    and neither does; anything else is indeterminate."""
    statuses = [h.phenotype for h in group]
    refs = base.observation
    typed = " + ".join(h.diplotype or "?" for h in group)
    if hla.POSITIVE in statuses:
        result = replace(base, phenotype=hla.POSITIVE, diplotype=typed)
    elif len(group) == 2 and statuses == [hla.NEGATIVE, hla.NEGATIVE]:
        result = replace(base, phenotype=hla.NEGATIVE, diplotype=typed)
    else:
        result = replace(
            base, diplotype=typed, reason=f"{len(group)} haplotype(s) do not settle {marker}"
        )
    trace.add(
        "results",
        f"{refs} ({marker} haplotypes {typed}) -> {result.phenotype}"
        + (f": {result.reason}" if result.reason else ""),
    )
    return result
