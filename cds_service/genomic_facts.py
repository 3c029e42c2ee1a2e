"""Genomic facts: one phenotype per gene from the patient's result Observations.

Reads metabolizer phenotype results (LOINC 53040-2 or gene-specific codes, and the
Genomics Reporting therapeutic-implication form) and genotype results (84413-4 with a
star-allele diplotype). Safety rules, each traced when it applies:

* only ``final``, ``amended`` or ``corrected`` results about the patient in context count;
* a value that is indeterminate, hedged or unparseable gives no phenotype (no alert);
* per gene the most recent result decides (effective, else issued); on the same date a
  lab-reported phenotype is preferred over one derived from the genotype; results of the
  same date that disagree make the gene indeterminate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from . import hla
from .knowledge import Knowledge, ResultKind
from .phenotype import (
    INDETERMINATE,
    Scored,
    normalise_diplotype,
    phenotype_from_text,
    score_diplotype,
)
from .trace import Trace

USABLE_STATUSES = frozenset({"final", "amended", "corrected"})


@dataclass(frozen=True)
class Finding:
    """What one Observation says about one gene."""

    gene: str
    kind: str  # "phenotype" or "genotype"
    phenotype: str
    observation: str  # "Observation/<id>"
    date: datetime | None = None
    date_text: str | None = None
    diplotype: str | None = None
    activity_score: float | None = None
    activity_score_text: str | None = None
    reason: str = ""


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
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def actionable(self) -> bool:
        return self.phenotype != INDETERMINATE


Resolver = Callable[[str], dict[str, Any] | None]


def summarise(
    observations: list[dict[str, Any]],
    patient_id: str,
    knowledge: Knowledge,
    trace: Trace,
    resolve: Resolver | None = None,
    fhir_base: str | None = None,
) -> dict[str, GeneResult]:
    """One result per gene (or HLA marker) from the patient's Observations.

    ``resolve`` reads a referenced Observation (``Observation/id``) that is not among
    ``observations``, e.g. the genotype a 3.0 therapeutic implication is derived from.
    ``fhir_base`` is the request's FHIR server: an absolute subject reference counts only
    when it points there (the same id on another server is another patient).
    """
    # The same result twice (prefetch and a paged search overlapping) is one result.
    unique: dict[str, dict[str, Any]] = {}
    for o in observations:
        if isinstance(o, dict):
            unique.setdefault(
                f"{o.get('resourceType')}/{o.get('id')}" if o.get("id") else str(id(o)), o
            )
    observations = list(unique.values())
    local = {
        f"Observation/{o.get('id')}": o
        for o in observations
        if o.get("resourceType") == "Observation"
    }

    def lookup(reference: str) -> dict[str, Any] | None:
        key = "/".join(reference.split("/_history/")[0].split("/")[-2:])
        if key in local:
            return local[key]
        return resolve(key) if resolve else None

    reader = _Reader(patient_id, knowledge, trace, lookup, fhir_base)
    findings: list[Finding] = []
    haplotypes: list[Finding] = []
    for obs in observations:
        try:
            interpreted = reader.interpret(obs)
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            # A malformed result is ignored (no alert from it), never a failed call.
            trace.add(
                "results",
                f"Observation/{obs.get('id', '?')} ignored: malformed ({type(exc).__name__})",
            )
            continue
        for finding in interpreted:
            (haplotypes if finding.kind == "haplotype" else findings).append(finding)
    findings.extend(_combine_haplotypes(haplotypes, findings, knowledge, trace))

    results: dict[str, GeneResult] = {}
    for gene in sorted({f.gene for f in findings}):
        result = decide([f for f in findings if f.gene == gene])
        results[gene] = result
        where = f"{result.kind} {result.observation}"
        trace.add(
            "facts",
            f"{gene}: {result.phenotype} (from {where})" + "".join(f"; {n}" for n in result.notes),
        )
    return results


class _Reader:
    """Interprets one Observation at a time; says in the trace why it used or ignored it."""

    def __init__(
        self,
        patient_id: str,
        knowledge: Knowledge,
        trace: Trace,
        lookup: Callable[[str], dict[str, Any] | None],
        fhir_base: str | None = None,
    ) -> None:
        self.fhir_base = fhir_base
        self.patient_id = patient_id
        self.knowledge = knowledge
        self.trace = trace
        self.lookup = lookup

    def interpret(self, obs: dict[str, Any]) -> list[Finding]:
        ref = f"{obs.get('resourceType', '?')}/{obs.get('id', '?')}"
        if obs.get("resourceType") != "Observation":
            return []
        kind = _kind(obs, self.knowledge)
        if kind is None:
            self.trace.add("results", f"{ref} ignored: not a genomic result code the service reads")
            return []
        status = obs.get("status")
        if status not in USABLE_STATUSES:
            self.trace.add(
                "results",
                f"{ref} ignored: status '{status}' (only final, amended or corrected count)",
            )
            return []
        if not _is_about(obs, self.patient_id, self.fhir_base):
            self.trace.add("results", f"{ref} ignored: its subject is not the patient in context")
            return []
        date, date_text = _date(obs)
        base = Finding(
            gene="?",
            kind=kind.kind,
            phenotype=INDETERMINATE,
            observation=ref,
            date=date,
            date_text=date_text,
        )

        if kind.kind == "presence":
            findings = self._presence(obs, kind.marker, base)
        else:
            gene = kind.gene or _gene(obs, self.knowledge)
            if gene is None and kind.kind == "therapeutic-implication":
                gene = self._gene_via_derived_from(obs)
            if gene is None:
                self.trace.add(
                    "results", f"{ref} ignored: the gene could not be identified unambiguously"
                )
                return []
            base = replace(base, gene=gene)
            if kind.kind in ("genotype", "haplotype") and gene.startswith("HLA-"):
                findings = self._hla_typing(obs, gene, base)
            elif kind.kind == "genotype":
                findings = [_genotype(obs, gene, self.knowledge, base)]
            elif kind.kind == "haplotype":
                findings = [_haplotype(obs, gene, base)]
            else:
                findings = [
                    replace(_phenotype(obs, kind.kind, self.knowledge, base), kind="phenotype")
                ]
        for f in findings:
            self._note(f)
        return findings

    def _note(self, f: Finding) -> None:
        what = f"{f.observation} ({f.gene} {f.kind}"
        if f.kind == "haplotype":
            self.trace.add(
                "results", f"{what} {f.diplotype or '?'})" + (f": {f.reason}" if f.reason else "")
            )
        elif f.phenotype == INDETERMINATE:
            self.trace.add("results", f"{what}): no usable result: {f.reason}")
        else:
            detail = f" {f.diplotype}" if f.diplotype else ""
            if f.activity_score_text is not None:
                detail += f", activity score {f.activity_score_text}"
            self.trace.add("results", f"{what}{detail}) -> {f.phenotype}")

    def _gene_via_derived_from(self, obs: dict[str, Any]) -> str | None:
        """A 3.0+ implication names its gene only through the genotype it derives from."""
        genes = set()
        for ref in _objects(obs.get("derivedFrom")):
            if not isinstance(ref, dict):
                continue
            target = self.lookup(str(ref.get("reference", ""))) if ref.get("reference") else None
            if target is not None and _is_about(target, self.patient_id, self.fhir_base):
                gene = _gene(target, self.knowledge)
            else:  # unreadable: the reference's display may still name the gene
                gene = _gene_in_text(str(ref.get("display", "")), self.knowledge)
            if gene:
                genes.add(gene)
        return genes.pop() if len(genes) == 1 else None

    def _hla_typing(self, obs: dict[str, Any], gene: str, base: Finding) -> list[Finding]:
        """Marker status from an HLA genotype, or from one haplotype (one copy: pooled with
        its partner in ``_combine_haplotypes``)."""
        markers = sorted(m for m in self.knowledge.markers if m.startswith(f"{gene}*"))
        texts = [
            t for t in [*_texts(obs.get("valueCodeableConcept")), _str(obs.get("valueString"))] if t
        ]
        if not markers:
            return [replace(base, reason=f"no recommendation depends on {gene} alleles")]
        if not texts:
            return [replace(base, gene=m, reason="the result has no value") for m in markers]
        out = []
        for marker in markers:
            statuses = {hla.marker_status(t, marker) for t in texts}
            known = {s for s, _ in statuses if s is not None}
            if len(known) == 1:
                out.append(replace(base, gene=marker, phenotype=known.pop(), diplotype=texts[0]))
            else:
                reason = next((r for s, r in statuses if r), f"conflicting values about {marker}")
                out.append(replace(base, gene=marker, reason=reason, diplotype=texts[0]))
        return out

    def _presence(self, obs: dict[str, Any], marker: str | None, base: Finding) -> list[Finding]:
        markers = (
            {marker}
            if marker
            else hla.markers_named(" ".join(_texts(obs.get("code"))), self.knowledge.markers)
        )
        value = obs.get("valueCodeableConcept")
        statuses = {
            hla.PRESENT_CODES[c.get("code")]
            for c in _objects(_dict(value).get("coding"))
            if c.get("code") in hla.PRESENT_CODES
        }
        if not statuses:
            texts = [*_texts(value), _str(obs.get("valueString"))]
            statuses = {s for s in (hla.presence_from_text(t) for t in texts if t) if s}
        out = []
        for m in sorted(markers):
            if len(statuses) == 1:
                out.append(replace(base, gene=m, phenotype=next(iter(statuses))))
            else:
                out.append(replace(base, gene=m, reason="the value is not a clear present/absent"))
        return out


def decide(findings: list[Finding]) -> GeneResult:
    """The most recent finding decides; a lab phenotype beats a derived one of the same date."""
    oldest = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(
        findings,
        # newest first; on a date, a reported result first, then a readable one
        key=lambda f: (
            f.date or oldest,
            f.kind in ("phenotype", "presence"),
            f.phenotype != INDETERMINATE,
        ),
        reverse=True,
    )
    top = ordered[0]
    same_date = [f for f in ordered if f.date == top.date]
    notes: list[str] = []
    phenotype = top.phenotype

    reported = [f for f in same_date if f.kind in ("phenotype", "presence")]
    if len({f.phenotype for f in reported}) > 1:
        phenotype = INDETERMINATE
        notes.append(
            "reported results of the same date disagree ("
            + ", ".join(sorted({f.phenotype for f in reported}))
            + "): no alert"
        )
    genotype = next((f for f in same_date if f.kind == "genotype" and f.diplotype), None)
    if genotype is not None and top.kind != "genotype" and genotype.phenotype != top.phenotype:
        notes.append(
            f"the genotype {genotype.diplotype} would give {genotype.phenotype}; "
            "the lab's reported phenotype is used"
        )
    if top.kind == "genotype":
        clashing = {f.phenotype for f in same_date if f.kind == "genotype"} - {INDETERMINATE}
        if len(clashing) > 1:
            phenotype = INDETERMINATE
            notes.append("genotypes of the same date disagree: no alert")
    older = [
        f for f in ordered if f not in same_date and f.phenotype not in (phenotype, INDETERMINATE)
    ]
    for f in older[:2]:
        notes.append(f"an older result ({f.date_text or 'undated'}) said {f.phenotype}")

    # The diplotype and score shown on the card: the deciding genotype's own, or those of an
    # agreeing genotype of the same date behind a reported phenotype.
    shown = top
    if top.kind != "genotype" and genotype is not None and genotype.phenotype == phenotype:
        shown = genotype
    return GeneResult(
        gene=top.gene,
        phenotype=phenotype,
        observation=top.observation,
        kind=top.kind,
        date_text=top.date_text,
        diplotype=shown.diplotype,
        activity_score=shown.activity_score,
        activity_score_text=shown.activity_score_text,
        notes=tuple(notes),
    )


def _combine_haplotypes(
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
        scored = score_diplotype("/".join(alleles), table)
        finding = _scored(base, scored)
        trace.add(
            "results",
            f"{refs} ({gene} haplotypes {scored.diplotype}) -> {scored.phenotype}"
            + (f": {scored.reason}" if scored.reason else ""),
        )
        out.append(finding)
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


# -- one Observation ----------------------------------------------------------------------


def _kind(obs: dict[str, Any], knowledge: Knowledge) -> ResultKind | None:
    codes = knowledge.result_codes.codes
    for code in _codes(obs.get("code")):
        if code in codes:
            return codes[code]
    # A presence/absence result named by its text, e.g. "HLA-B*15:02 [Presence]".
    markers = hla.markers_named(" ".join(_texts(obs.get("code"))), knowledge.markers)
    if len(markers) == 1:
        return ResultKind(kind="presence", marker=markers.pop())
    return None


def _phenotype(obs: dict[str, Any], kind: str, knowledge: Knowledge, base: Finding) -> Finding:
    values: list[Any] = []
    if kind == "therapeutic-implication":
        wanted = set(knowledge.result_codes.implication_component_codes)
        for comp in _objects(obs.get("component")):
            if set(_codes(comp.get("code"))) & wanted:
                values.append(comp.get("valueCodeableConcept") or comp.get("valueString"))
    else:
        values.append(obs.get("valueCodeableConcept") or obs.get("valueString"))
    values = [v for v in values if v]
    if not values:
        return replace(base, reason="the result has no value")
    phenotypes = {_phenotype_value(v, knowledge, base.gene) for v in values}
    if len(phenotypes) != 1 or None in phenotypes:
        return replace(
            base, reason=f"the value '{_describe(values[0])}' is not a clear metabolizer status"
        )
    return replace(base, phenotype=phenotypes.pop())  # type: ignore[arg-type]


def _phenotype_value(value: Any, knowledge: Knowledge, gene: str) -> str | None:
    symbols = knowledge.gene_symbols
    if isinstance(value, str):
        return phenotype_from_text(value, gene, symbols)
    answers = knowledge.result_codes.phenotype_answers
    codings = _objects(_dict(value).get("coding"))
    found = {answers[c.get("code")] for c in codings if c.get("code") in answers}
    if len(found) > 1:
        return None
    if found:
        return found.pop()
    texts = [_str(_dict(value).get("text"))] + [_str(c.get("display")) for c in codings]
    found = {phenotype_from_text(t, gene, symbols) for t in texts if t}
    return found.pop() if len(found) == 1 else None


def _genotype(obs: dict[str, Any], gene: str, knowledge: Knowledge, base: Finding) -> Finding:
    table = knowledge.genes.get(gene)
    candidates = [*_texts(obs.get("valueCodeableConcept")), _str(obs.get("valueString"))]
    candidates = [c for c in candidates if c]
    if not candidates:
        return replace(base, reason="the genotype has no value")
    if table is None:
        return replace(base, reason=f"no allele table for {gene}")
    for text in candidates:
        other = _gene_in_text(text, knowledge)
        if other and other != gene:
            return replace(base, reason=f"the value '{text}' names {other}, not {gene}")
        if normalise_diplotype(text, gene) is None:
            continue
        return _scored(base, score_diplotype(text, table))
    return replace(base, reason=f"'{candidates[0]}' is not a diplotype the service can read")


def _scored(base: Finding, scored: Scored) -> Finding:
    return replace(
        base,
        phenotype=scored.phenotype,
        diplotype=scored.diplotype,
        activity_score=scored.activity_score,
        activity_score_text=scored.activity_score_text,
        reason=scored.reason,
    )


def _haplotype(obs: dict[str, Any], gene: str, base: Finding) -> Finding:
    for text in [*_texts(obs.get("valueCodeableConcept")), _str(obs.get("valueString"))]:
        m = re.search(r"\*[0-9]+[A-Z]?(?:\.[0-9]+)?(?:x(?:[0-9]+|N|≥3))?", text.replace(gene, ""))
        if m:
            return replace(base, diplotype=m.group(0))
    return replace(base, reason="no star allele in the value")


# -- helpers ------------------------------------------------------------------------------


def _objects(value: Any) -> list[dict[str, Any]]:
    """The JSON objects of a FHIR array (a lone object counts as one; anything else, none)."""
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _codes(concept: Any) -> list[str]:
    return [
        f"{_str(c.get('system'))}|{_str(c.get('code'))}"
        for c in _objects(_dict(concept).get("coding"))
    ]


def _texts(concept: Any) -> list[str]:
    concept = _dict(concept)
    out = [_str(c.get(k)) for c in _objects(concept.get("coding")) for k in ("display", "code")]
    out.insert(0, _str(concept.get("text")))
    return [t for t in out if t]


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return value
    texts = _texts(value)
    return texts[0] if texts else "?"


def _is_about(obs: dict[str, Any], patient_id: str, fhir_base: str | None) -> bool:
    ref = _str(_dict(obs.get("subject")).get("reference")).split("/_history/")[0]
    if ref == f"Patient/{patient_id}":
        return True
    # An absolute reference must point at the request's own FHIR server.
    return bool(fhir_base) and ref == f"{fhir_base.rstrip('/')}/Patient/{patient_id}"


def _gene(obs: dict[str, Any], knowledge: Knowledge) -> str | None:
    codes = knowledge.result_codes
    wanted = set(codes.gene_component_codes)
    found: set[str] = set()
    for comp in _objects(obs.get("component")):
        if not set(_codes(comp.get("code"))) & wanted:
            continue
        value = _dict(comp.get("valueCodeableConcept"))
        for coding in _objects(value.get("coding")):
            code = _str(coding.get("code"))
            code = code if code.startswith("HGNC:") else f"HGNC:{code}"
            if code in codes.genes:
                found.add(codes.genes[code])
        if not found:
            for text in _texts(value):
                gene = _gene_in_text(text, knowledge)
                if gene:
                    found.add(gene)
    if not found:
        for text in (
            _texts(obs.get("code"))
            + _texts(obs.get("valueCodeableConcept"))
            + [_str(obs.get("valueString"))]
        ):
            gene = _gene_in_text(text, knowledge)
            if gene:
                found.add(gene)
    return found.pop() if len(found) == 1 else None


def _gene_in_text(text: str, knowledge: Knowledge) -> str | None:
    symbols = set(knowledge.result_codes.genes.values())
    hits = {
        s for s in symbols if re.search(rf"(?<![A-Za-z0-9-]){re.escape(s)}(?![A-Za-z0-9-])", text)
    }
    return hits.pop() if len(hits) == 1 else None


def _date(obs: dict[str, Any]) -> tuple[datetime | None, str | None]:
    period = _dict(obs.get("effectivePeriod"))
    for value in (
        obs.get("effectiveDateTime"),
        obs.get("effectiveInstant"),
        period.get("start"),
        obs.get("issued"),
    ):
        if isinstance(value, str) and value:
            parsed = _parse_date(value)
            if parsed is not None:
                return parsed, value[:10]
    return None, None


def _parse_date(value: str) -> datetime | None:
    text = value.strip().replace("Z", "+00:00")
    if re.fullmatch(r"\d{4}", text):
        text += "-01-01"
    elif re.fullmatch(r"\d{4}-\d{2}", text):
        text += "-01"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
