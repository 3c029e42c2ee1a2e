"""Deciding one phenotype per gene (or HLA marker) from all of a patient's findings.

Genes do not change, so the rules favour the most informative definite result:

1. **A genotype on file decides**, re-interpreted with today's CPIC tables. A lab-reported
   phenotype that disagrees (an outdated label such as "Extensive metabolizer" for ``*1/*4``,
   which CPIC has called an intermediate metabolizer since 2019) is shown beside it.
2. Without a definite genotype, the reported phenotype decides (pre-2019 wording is mapped
   to today's term and the card says the lab used it).
3. Among definite results of the same kind, the newest decides; older ones that disagree are
   mentioned. Definite results of the newest date that disagree (in phenotype, or in activity
   score) give no alert, unless one was amended or corrected after the others: it replaces
   them. One exception to rule 1: a CYP2D6 genotype that states no copy number, and a later
   day's reported ultrarapid metabolizer: the later test counted copies and found a
   duplication; it decides.
4. **An indeterminate or failed newer result does not erase an older definite one**: the
   older result stands and the card mentions the newer one.
5. Two haplotype results of one date make a diplotype (an HLA marker: present if either
   copy carries it, absent only when both copies are typed without it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from ..core.trace import Trace
from ..core.wording import with_article
from ..knowledge.loader import Knowledge
from . import hla
from .result_reading import Finding, scored
from .star_alleles import INDETERMINATE, score_diplotype

_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class GeneResult:
    """The phenotype the service acts on for one gene, and where it came from."""

    gene: str
    phenotype: str
    observation: str
    kind: str
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
    phenoconverted_by: tuple[str, ...] = ()

    @property
    def actionable(self) -> bool:
        return self.phenotype != INDETERMINATE


def decide(findings: list[Finding]) -> GeneResult:
    """One result for a gene from all of its findings (see the module's rules)."""
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
    newer = _newer_report(definite, genotypes)
    if newer is not None:  # a later test (e.g. with copy numbers) overrules an older genotype
        older_genotype = genotypes[0]
        pool = [f for f in definite if f.kind != "genotype"]
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
        same_date = [replaced]
    scores = {f.activity_score for f in same_date if f.activity_score is not None}
    top = next((f for f in same_date if f.activity_score is not None), same_date[0])
    phenotype = top.phenotype
    if len({f.phenotype for f in same_date}) > 1 or len(scores) > 1:
        phenotype = INDETERMINATE
        notes.append(
            f"{top.kind} results of the same date disagree ("
            + ", ".join(sorted({_label(f) for f in same_date}))
            + "): no alert"
        )

    reinterpreted_from = None
    if top.kind == "genotype" and "*" not in top.gene and phenotype != INDETERMINATE:
        for reported in [f for f in definite if f.kind == "phenotype"][:2]:
            if reported.phenotype != phenotype or reported.legacy:
                when = f" in {reported.date_text[:4]}" if reported.date_text else ""
                label = reported.reported_as or reported.phenotype
                wording = " (pre-2019 wording)" if reported.legacy else ""
                notes.append(
                    f"reported by the lab as '{label}'{wording}{when}; under current CPIC "
                    f"rules {top.diplotype} is {with_article(phenotype.lower())}"
                )
                reinterpreted_from = reinterpreted_from or label
    elif top.legacy:
        notes.append(
            f"the lab used pre-2019 wording ('{top.reported_as}'), read as today's "
            f"{top.phenotype.lower()}; a genotype would confirm it under current CPIC rules"
        )
    if top.likely and phenotype == top.phenotype:
        notes.append(
            f"the lab reported '{top.reported_as or top.likely}', CPIC's term for a phenotype "
            f"assigned with less certainty: the advice for {with_article(phenotype.lower())} "
            "applies"
        )

    older = [f for f in pool if f not in same_date and f.phenotype not in (phenotype,)]
    notes.extend(
        f"an older result ({f.date_text or 'undated'}) said {_label(f)}" for f in older[:2]
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
    return _result(top, phenotype, notes=notes, reinterpreted_from=reinterpreted_from)


#: Genes whose copies a genotype may not count: a later test that reports an ultrarapid
#: metabolizer where an older genotype stated no copy number has found a duplication.
COPY_NUMBER_GENES = frozenset({"CYP2D6"})
_ULTRARAPID = "Ultrarapid Metabolizer"


def _newer_report(definite: list[Finding], genotypes: list[Finding]) -> Finding | None:
    """A reported ultrarapid phenotype, of a later day than the newest genotype, where that
    genotype states no copy number (CYP2D6 *1/*1 in 2019, ultrarapid in 2024: a test that
    counts gene copies found a duplication). Any other disagreement leaves the genotype to
    decide, read with today's tables (outdated labels, tests that saw less)."""
    if not genotypes:
        return None
    genotype = genotypes[0]
    if (
        genotype.gene not in COPY_NUMBER_GENES
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
        base = replace(group[0], kind="genotype", observation=refs, diplotype=None)
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
