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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .knowledge import Knowledge
from .phenotype import INDETERMINATE, normalise_diplotype, phenotype_from_text, score_diplotype
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


def summarise(
    observations: list[dict[str, Any]], patient_id: str, knowledge: Knowledge, trace: Trace
) -> dict[str, GeneResult]:
    findings: list[Finding] = []
    for obs in observations:
        findings.extend(interpret(obs, patient_id, knowledge, trace))
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


def interpret(
    obs: dict[str, Any], patient_id: str, knowledge: Knowledge, trace: Trace
) -> list[Finding]:
    ref = f"{obs.get('resourceType', '?')}/{obs.get('id', '?')}"
    if obs.get("resourceType") != "Observation":
        return []
    codes = knowledge.result_codes
    kind_entry = next((codes.codes[c] for c in _codes(obs.get("code")) if c in codes.codes), None)
    if kind_entry is None:
        trace.add("results", f"{ref} ignored: not a genomic result code the service reads")
        return []
    status = obs.get("status")
    if status not in USABLE_STATUSES:
        trace.add(
            "results", f"{ref} ignored: status '{status}' (only final, amended or corrected count)"
        )
        return []
    if not _is_about(obs, patient_id):
        trace.add("results", f"{ref} ignored: its subject is not the patient in context")
        return []
    gene = kind_entry.gene or _gene(obs, knowledge)
    if gene is None:
        trace.add("results", f"{ref} ignored: the gene could not be identified unambiguously")
        return []
    date, date_text = _date(obs)
    base = Finding(
        gene=gene,
        kind="phenotype",
        phenotype=INDETERMINATE,
        observation=ref,
        date=date,
        date_text=date_text,
    )

    if kind_entry.kind == "genotype":
        finding = _genotype(obs, gene, knowledge, base)
    else:
        finding = _phenotype(obs, kind_entry.kind, knowledge, base)
    if finding.phenotype == INDETERMINATE:
        trace.add(
            "results", f"{ref} ({gene} {finding.kind}): no usable phenotype: {finding.reason}"
        )
    else:
        detail = (
            f" {finding.diplotype}, activity score {finding.activity_score_text}"
            if finding.diplotype
            else ""
        )
        trace.add("results", f"{ref} ({gene} {finding.kind}{detail}) -> {finding.phenotype}")
    return [finding]


def decide(findings: list[Finding]) -> GeneResult:
    """The most recent finding decides; a lab phenotype beats a derived one of the same date."""
    oldest = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(
        findings, key=lambda f: (f.date or oldest, f.kind == "phenotype"), reverse=True
    )
    top = ordered[0]
    same_date = [f for f in ordered if f.date == top.date]
    notes: list[str] = []
    phenotype = top.phenotype

    lab = [f for f in same_date if f.kind == "phenotype"]
    if len({f.phenotype for f in lab}) > 1:
        phenotype = INDETERMINATE
        notes.append(
            "reported phenotypes of the same date disagree ("
            + ", ".join(sorted({f.phenotype for f in lab}))
            + "): no alert"
        )
    genotype = next((f for f in same_date if f.kind == "genotype" and f.diplotype), None)
    if genotype is not None and top.kind == "phenotype" and genotype.phenotype != top.phenotype:
        notes.append(
            f"the genotype {genotype.diplotype} would give {genotype.phenotype}; "
            "the lab's reported phenotype is used"
        )
    older = [
        f for f in ordered if f not in same_date and f.phenotype not in (phenotype, INDETERMINATE)
    ]
    for f in older[:2]:
        notes.append(f"an older result ({f.date_text or 'undated'}) said {f.phenotype}")

    # The diplotype and score shown on the card: the deciding genotype's own, or those of an
    # agreeing genotype of the same date behind a reported phenotype.
    shown = top
    if top.kind == "phenotype" and genotype is not None and genotype.phenotype == phenotype:
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


# -- one Observation ----------------------------------------------------------------------


def _phenotype(obs: dict[str, Any], kind: str, knowledge: Knowledge, base: Finding) -> Finding:
    values: list[Any] = []
    if kind == "therapeutic-implication":
        wanted = set(knowledge.result_codes.implication_component_codes)
        for comp in obs.get("component") or []:
            if set(_codes(comp.get("code"))) & wanted:
                values.append(comp.get("valueCodeableConcept") or comp.get("valueString"))
    else:
        values.append(obs.get("valueCodeableConcept") or obs.get("valueString"))
    values = [v for v in values if v]
    if not values:
        return replace(base, reason="the result has no value")
    phenotypes = {_phenotype_value(v, knowledge) for v in values}
    if len(phenotypes) != 1 or None in phenotypes:
        return replace(
            base, reason=f"the value '{_describe(values[0])}' is not a clear metabolizer status"
        )
    return replace(base, phenotype=phenotypes.pop())  # type: ignore[arg-type]


def _phenotype_value(value: Any, knowledge: Knowledge) -> str | None:
    if isinstance(value, str):
        return phenotype_from_text(value)
    answers = knowledge.result_codes.phenotype_answers
    found = {answers[c.get("code")] for c in value.get("coding") or [] if c.get("code") in answers}
    if len(found) > 1:
        return None
    if found:
        return found.pop()
    texts = [value.get("text")] + [c.get("display") for c in value.get("coding") or []]
    found = {phenotype_from_text(t) for t in texts if t}
    return found.pop() if len(found) == 1 else None


def _genotype(obs: dict[str, Any], gene: str, knowledge: Knowledge, base: Finding) -> Finding:
    base = replace(base, kind="genotype")
    table = knowledge.genes.get(gene)
    candidates = [*_texts(obs.get("valueCodeableConcept")), obs.get("valueString") or ""]
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
        scored = score_diplotype(text, table)
        return replace(
            base,
            phenotype=scored.phenotype,
            diplotype=scored.diplotype,
            activity_score=scored.activity_score,
            activity_score_text=scored.activity_score_text,
            reason=scored.reason,
        )
    return replace(base, reason=f"'{candidates[0]}' is not a diplotype the service can read")


# -- helpers ------------------------------------------------------------------------------


def _codes(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [
        f"{c.get('system', '')}|{c.get('code', '')}"
        for c in concept.get("coding") or []
        if isinstance(c, dict)
    ]


def _texts(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    out = [
        str(c.get(k)) for c in concept.get("coding") or [] for k in ("display", "code") if c.get(k)
    ]
    if concept.get("text"):
        out.insert(0, str(concept["text"]))
    return out


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return value
    texts = _texts(value)
    return texts[0] if texts else "?"


def _is_about(obs: dict[str, Any], patient_id: str) -> bool:
    subject = obs.get("subject") or {}
    ref = str(subject.get("reference", "")) if isinstance(subject, dict) else ""
    ref = ref.split("/_history/")[0]
    return ref == f"Patient/{patient_id}" or ref.endswith(f"/Patient/{patient_id}")


def _gene(obs: dict[str, Any], knowledge: Knowledge) -> str | None:
    codes = knowledge.result_codes
    wanted = set(codes.gene_component_codes)
    found: set[str] = set()
    for comp in obs.get("component") or []:
        if not set(_codes(comp.get("code"))) & wanted:
            continue
        value = comp.get("valueCodeableConcept") or {}
        for coding in value.get("coding") or []:
            code = str(coding.get("code", ""))
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
            + [obs.get("valueString") or ""]
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
    period = obs.get("effectivePeriod") or {}
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
