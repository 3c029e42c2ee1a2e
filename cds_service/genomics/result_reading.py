"""Reading one genomic result Observation, in each shape labs and EHRs store it.

Shapes read: a metabolizer phenotype (LOINC 53040-2, gene-specific codes such as 79716-7, or a
site's code), the Genomics Reporting therapeutic-implication forms (2.0 component
``predicted-therapeutic-implication``, 3.0+ ``therapeutic-implication`` reached through
``derivedFrom``), a genotype (84413-4: star-allele diplotype, or HLA typing as a GL string or
allele list), a haplotype (84414-2: one copy) and a presence/absence answer for an HLA allele.

Each Observation gives ``Finding``s: what it says about one gene or HLA marker. Safety rules,
each traced when it applies: only ``final``, ``amended`` or ``corrected`` results about the
patient in context count; a value that is indeterminate, hedged or unparseable gives an
indeterminate finding (never an alert) with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from ..core.trace import Trace
from ..fhir.values import (
    as_dict,
    as_str,
    codes,
    describe,
    effective_date,
    is_about,
    objects,
    parse_date,
    texts,
    value_texts,
)
from ..knowledge.loader import Knowledge
from ..knowledge.models import ResultKind
from . import hla, mhs
from .phenotype import legacy_wording, phenotype_from_text, possible_phenotype, split_score
from .star_alleles import INDETERMINATE, Scored, normalise_allele, normalise_diplotype
from .star_alleles import score_diplotype as _score

USABLE_STATUSES = frozenset({"final", "amended", "corrected"})

#: What a finding is (a therapeutic implication is read as the phenotype it states).
FindingKind = Literal["phenotype", "genotype", "haplotype", "presence", "variant"]

Lookup = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class Finding:
    """What one Observation says about one gene (or HLA marker)."""

    gene: str
    kind: FindingKind
    phenotype: str
    observation: str  # "Observation/<id>"
    date: datetime | None = None
    date_text: str | None = None
    diplotype: str | None = None
    activity_score: float | None = None
    activity_score_text: str | None = None
    score_range: tuple[float, float | None] | None = None
    reported_as: str | None = None  # the lab's own words for a reported phenotype
    legacy: bool = False  # the lab used pre-2019 phenotype wording
    #: CPIC's "Likely ..." term the lab reported, read as the phenotype it names
    likely: str | None = None
    reason: str = ""  # why it is indeterminate, if it is
    #: when an amended or corrected result was issued (it replaces what was issued before)
    revised: datetime | None = None
    #: who reported it, as the Observation's performer names it (the lab), if it does
    performer: str | None = None
    #: what the card should say about how it was read (an RYR1 variant the lab and CPIC's
    #: list classify differently)
    note: str = ""


class ResultReader:
    """Interprets one Observation at a time; says in the trace why it used or ignored it."""

    def __init__(
        self,
        patient_id: str,
        knowledge: Knowledge,
        trace: Trace,
        lookup: Lookup,
        fhir_base: str | None = None,
        needed: frozenset[str] | None = None,
    ) -> None:
        self.needed = needed
        self.looked_up = False  # did a reading use another resource (derivedFrom)?
        self.fhir_base = fhir_base
        self.patient_id = patient_id
        self.knowledge = knowledge
        self.trace = trace
        self.lookup = lookup

    def kind(self, obs: dict[str, Any]) -> ResultKind | None:
        """What kind of genomic result an Observation is, or None if it is none we read."""
        known = self.knowledge.result_codes.codes
        for code in codes(obs.get("code")):
            if code in known:
                return known[code]
        # A presence/absence result named by its text, e.g. "HLA-B*15:02 [Presence]".
        markers = hla.markers_named(" ".join(texts(obs.get("code"))), self.knowledge.markers)
        if len(markers) == 1:
            return ResultKind(kind="presence", marker=markers.pop())
        return None

    def interpret(self, obs: dict[str, Any], kind: ResultKind | None = None) -> list[Finding]:
        ref = f"{obs.get('resourceType', '?')}/{obs.get('id', '?')}"
        if obs.get("resourceType") != "Observation":
            return []
        kind = kind or self.kind(obs)
        if kind is None:
            parts = self._presence_parts(obs)
            if parts:  # a panel whose components are presence results (HLA-B*15:02: Present)
                return [f for part, part_kind in parts for f in self.interpret(part, part_kind)]
            self.trace.add("results", f"{ref} ignored: not a genomic result code the service reads")
            return []
        # Which gene first: a result for a gene no ordered drug depends on is not read further.
        gene = None
        if kind.kind == "presence":
            if kind.marker and not self._wanted(kind.marker):
                self.trace.add("results", f"{ref} not read: no ordered drug depends on it")
                return []
        else:
            gene = kind.gene or gene_of(obs, self.knowledge)
            named = component_genes(obs, self.knowledge) if kind.gene else set()
            if named - {kind.gene}:
                self.trace.add(
                    "results",
                    f"{ref} ignored: its code is a {kind.gene} result but its gene-studied "
                    f"component names {', '.join(sorted(named))}",
                )
                return []
            if gene is not None and not self._wanted(gene):
                self.trace.add("results", f"{ref} ({gene}) not read: no ordered drug depends on it")
                return []
        status = as_str(obs.get("status"))
        if status not in USABLE_STATUSES:
            self.trace.add(
                "results",
                f"{ref} ignored: status '{status}' (only final, amended or corrected count)",
            )
            return []
        if not is_about(obs, self.patient_id, self.fhir_base):
            self.trace.add("results", f"{ref} ignored: its subject is not the patient in context")
            return []
        date, date_text = effective_date(obs)
        issued = obs.get("issued")
        revised = (
            parse_date(issued)
            if status in ("amended", "corrected") and isinstance(issued, str)
            else None
        )
        performer = performer_of(obs)
        # (an implication is read as the phenotype it states)
        found_kind: FindingKind = (
            "phenotype"
            if kind.kind == "therapeutic-implication"
            else "variant"
            if kind.kind == "diagnostic-implication"
            else kind.kind
        )

        def base_for(gene: str) -> Finding:  # (indeterminate until a value is read)
            return Finding(
                gene,
                found_kind,
                INDETERMINATE,
                ref,
                date,
                date_text,
                revised=revised,
                performer=performer,
            )

        if kind.kind == "presence":
            findings = self._presence(obs, kind.marker, base_for("?"))
        else:
            if gene is None and kind.kind in ("therapeutic-implication", "diagnostic-implication"):
                gene = self._gene_via_derived_from(obs)
            if gene is None:
                self.trace.add(
                    "results", f"{ref} ignored: the gene could not be identified unambiguously"
                )
                return []
            if not self._wanted(gene):
                self.trace.add("results", f"{ref} ({gene}) not read: no ordered drug depends on it")
                return []
            base = base_for(gene)
            if mhs.is_mhs_gene(gene, self.knowledge):
                findings = [self._mhs(obs, kind.kind, base)]
            elif kind.kind in ("variant", "diagnostic-implication"):
                self.trace.add(
                    "results",
                    f"{ref} ({gene} {kind.kind}) ignored: variant results are read only for "
                    + ", ".join(sorted(self.knowledge.mhs.genes)),
                )
                return []
            elif kind.kind in ("genotype", "haplotype") and gene.startswith("HLA-"):
                findings = self._hla_typing(obs, gene, base)
            elif kind.kind == "genotype":
                findings = [self._genotype(obs, gene, base)]
            elif kind.kind == "haplotype":
                findings = [_haplotype(obs, gene, base)]
            else:
                findings = [replace(self._phenotype(obs, kind.kind, base), kind="phenotype")]
        for f in findings:
            self._note(f)
        return findings

    def _presence_parts(self, obs: dict[str, Any]) -> list[tuple[dict[str, Any], ResultKind]]:
        """The components of an Observation that are presence results by their code, each as
        an Observation of its own (the parent's status, subject and dates; its code and value)."""
        known = self.knowledge.result_codes.codes
        parts = []
        for component in objects(obs.get("component")):
            kind = next((known[c] for c in codes(component.get("code")) if c in known), None)
            if kind is None or kind.kind != "presence":
                continue
            part = {k: v for k, v in obs.items() if k != "component" and not k.startswith("value")}
            part.update({k: v for k, v in component.items() if k.startswith("value")})
            part["code"] = component.get("code")
            parts.append((part, kind))
        return parts

    def _wanted(self, gene: str) -> bool:
        """Does an ordered drug depend on this gene (or one of its HLA alleles)?"""
        if self.needed is None or gene in self.needed:
            return True
        return any(m.startswith(f"{gene}*") for m in self.needed)

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
            if f.reported_as and f.legacy:
                detail += f", reported as '{f.reported_as}' (pre-2019 wording)"
            if f.likely:
                detail += (
                    f", reported as CPIC's '{f.likely}': read as {f.phenotype.lower()} (no "
                    f"'Likely' row for {f.gene}; the phenotype it names gives the advice)"
                )
            self.trace.add("results", f"{what}{detail}) -> {f.phenotype}")

    def _gene_via_derived_from(self, obs: dict[str, Any]) -> str | None:
        """A 3.0+ implication names its gene only through the genotype it derives from."""
        genes = set()
        for ref in objects(obs.get("derivedFrom")):
            reference = as_str(ref.get("reference"))
            self.looked_up = True
            target = self.lookup(reference) if reference else None
            if target is not None and is_about(target, self.patient_id, self.fhir_base):
                gene = gene_of(target, self.knowledge)
            else:  # unreadable: the reference's display may still name the gene
                gene = gene_in_text(as_str(ref.get("display")), self.knowledge)
            if gene:
                genes.add(gene)
        return genes.pop() if len(genes) == 1 else None

    def _hla_typing(self, obs: dict[str, Any], gene: str, base: Finding) -> list[Finding]:
        """Marker status from an HLA genotype, or from one haplotype (one copy: pooled with
        its partner when the gene's results are decided)."""
        markers = sorted(m for m in self.knowledge.markers if m.startswith(f"{gene}*"))
        values = value_texts(obs)
        if not markers:
            return [replace(base, reason=f"no recommendation depends on {gene} alleles")]
        if not values:
            return [replace(base, gene=m, reason="the result has no value") for m in markers]
        shown = hla.strip_gl_prefix(values[0])
        out = []
        for marker in markers:
            statuses = [hla.marker_status(t, marker) for t in values]
            known = {s for s, _ in statuses if s is not None}
            if len(known) == 1:
                out.append(replace(base, gene=marker, phenotype=known.pop(), diplotype=shown))
            else:
                reason = next(
                    (r for s, r in statuses if r and len(known) < 2),
                    f"the values of this result disagree about {marker}",
                )
                out.append(replace(base, gene=marker, reason=reason, diplotype=shown))
        return out

    def _presence(self, obs: dict[str, Any], marker: str | None, base: Finding) -> list[Finding]:
        markers = (
            {marker}
            if marker
            else hla.markers_named(" ".join(texts(obs.get("code"))), self.knowledge.markers)
        )
        value = obs.get("valueCodeableConcept")
        statuses = {
            hla.PRESENT_CODES[as_str(c.get("code"))]
            for c in objects(as_dict(value).get("coding"))
            if as_str(c.get("code")) in hla.PRESENT_CODES
        }
        if not statuses and isinstance(obs.get("valueBoolean"), bool):
            statuses = {hla.POSITIVE if obs["valueBoolean"] else hla.NEGATIVE}
        if not statuses:
            values = [*texts(value), as_str(obs.get("valueString"))]
            statuses = {s for s in (hla.presence_from_text(t) for t in values if t) if s}
        out = []
        for m in sorted(markers):
            if len(statuses) == 1:
                out.append(replace(base, gene=m, phenotype=next(iter(statuses))))
            else:
                out.append(replace(base, gene=m, reason="the value is not a clear present/absent"))
        return out

    def _mhs(self, obs: dict[str, Any], kind: str, base: Finding) -> Finding:
        """An RYR1 or CACNA1S result: a variant, a genotype, its clinical significance, or an
        interpretation in words (``mhs``; the rules are knowledge)."""
        gene = base.gene  # (``base.kind``: an implication is shown as what it states)
        parts = objects(obs.get("component"))
        words = [*value_texts(obs), *(t for c in parts for t in _component_texts(c))]
        for text in words:  # an interpretation in words decides first
            read = mhs.read_phrase(gene, text, self.knowledge)
            if read is not None:
                return replace(base, phenotype=read.phenotype, reason=read.reason, diplotype=None)
        if kind in ("phenotype", "therapeutic-implication"):
            value = describe(obs.get("valueCodeableConcept") or obs.get("valueString") or "")
            return replace(
                base,
                reason=f"'{value[:120]}' is not a malignant hyperthermia result the service reads",
            )
        names_from = [*words]
        significance_parts = [
            c
            for c in parts
            if set(codes(c.get("code"))) & {"http://loinc.org|53037-8"}
            or "significance" in " ".join(texts(c.get("code"))).lower()
        ]
        sig_codes = [
            as_str(coding.get("code"))
            for c in significance_parts
            for coding in objects(as_dict(c.get("valueCodeableConcept")).get("coding"))
        ]
        sig_words = [t for c in significance_parts for t in _component_texts(c)]
        if kind == "diagnostic-implication":  # the variant it is derived from names it
            for ref in objects(obs.get("derivedFrom")):
                reference = as_str(ref.get("reference"))
                self.looked_up = True
                target = self.lookup(reference) if reference else None
                if target is not None and is_about(target, self.patient_id, self.fhir_base):
                    names_from += value_texts(target)
                    names_from += [
                        t for c in objects(target.get("component")) for t in _component_texts(c)
                    ]
        significance = mhs.significance_of(sig_words, sig_codes, self.knowledge)
        names = mhs.identifiers(names_from)
        value_codes = {
            as_str(c.get("code"))
            for c in objects(as_dict(obs.get("valueCodeableConcept")).get("coding"))
        }
        absent = kind == "variant" and bool(
            "LA9634-2" in value_codes
            or any(hla.presence_from_text(t) == hla.NEGATIVE for t in value_texts(obs)[:1])
        )
        if not names and significance is None and not absent:
            return replace(base, reason=f"no {gene} variant or classification in the result")
        read = mhs.read_variants(gene, names, significance, self.knowledge, absent=absent)
        return replace(
            base, phenotype=read.phenotype, diplotype=read.shown, reason=read.reason, note=read.note
        )

    def _phenotype(self, obs: dict[str, Any], kind: str, base: Finding) -> Finding:
        values: list[Any] = []
        if kind == "therapeutic-implication":
            wanted = set(self.knowledge.result_codes.implication_component_codes)
            for comp in objects(obs.get("component")):
                if set(codes(comp.get("code"))) & wanted:
                    values.append(comp.get("valueCodeableConcept") or comp.get("valueString"))
        else:
            values.append(obs.get("valueCodeableConcept") or obs.get("valueString"))
        values = [v for v in values if v]
        if not values:
            return replace(base, reason="the result has no value")
        read = {self._phenotype_value(v, base.gene) for v in values}
        unclear = f"the value '{describe(values[0])}' is not a clear metabolizer status"
        if read == {None} and len(values) == 1:
            return self._phenotype_with_score(values[0], base, unclear)
        if len(read) != 1 or None in read:
            return replace(base, reason=unclear)
        phenotype, legacy = read.pop()  # type: ignore[misc]
        return self._acting(
            replace(base, phenotype=phenotype, reported_as=describe(values[0]), legacy=bool(legacy))
        )

    def _acting(self, f: Finding) -> Finding:
        """CPIC's "Likely poor metabolizer" acts as a poor metabolizer where the knowledge has
        no "Likely" row for the gene (``Knowledge.acting_phenotype``); the card says so."""
        acting = self.knowledge.acting_phenotype(f.gene, f.phenotype)
        return f if acting == f.phenotype else replace(f, phenotype=acting, likely=f.phenotype)

    def _phenotype_with_score(self, value: Any, base: Finding, unclear: str) -> Finding:
        """A phenotype printed with its activity score ('Ultrarapid metabolizer (activity
        score 3.0)'): read when the score lies in the phenotype's CPIC band for the gene."""
        text = describe(value)
        phenotype, score_text = split_score(text, base.gene, self.knowledge.gene_symbols)
        if phenotype is None:
            possible = possible_phenotype(text, base.gene)
            if possible:
                unclear = (
                    f"'{text}' is CPIC's '{possible}': a phenotype resting on an allele of "
                    "uncertain or unknown function, for which the guidelines used here give no "
                    "advice (no card; a genotype or a definite phenotype would settle it)"
                )
            return replace(base, reason=unclear)
        reported = self._acting(
            replace(base, phenotype=phenotype, reported_as=text, legacy=legacy_wording(text))
        )
        if score_text is None:
            return reported
        score = float(score_text)
        band = self.knowledge.band(base.gene, phenotype)
        if band is None:  # no activity score for this gene: the status alone
            return reported
        low, high = band
        if score < low or (high is not None and score > high):
            return replace(
                base,
                reason=f"the value '{text}' gives an activity score outside its phenotype's band",
            )
        return replace(reported, activity_score=score, activity_score_text=score_text)

    def _phenotype_value(self, value: Any, gene: str) -> tuple[str, bool] | None:
        """(CPIC term, whether the lab used pre-2019 wording), or None when unclear."""
        symbols = self.knowledge.gene_symbols
        if isinstance(value, str):
            term = phenotype_from_text(value, gene, symbols)
            return (term, legacy_wording(value)) if term else None
        result_codes = self.knowledge.result_codes
        codings = objects(as_dict(value).get("coding"))
        coded = {
            (result_codes.phenotype_answers[c], c in result_codes.legacy_answers)
            for c in (as_str(coding.get("code")) for coding in codings)
            if c in result_codes.phenotype_answers
        }
        if len({term for term, _ in coded}) > 1:
            return None
        if coded:
            return coded.pop()
        words = [as_str(as_dict(value).get("text"))] + [as_str(c.get("display")) for c in codings]
        found = {
            (term, legacy_wording(t))
            for t in words
            if t and (term := phenotype_from_text(t, gene, symbols))
        }
        return found.pop() if len({term for term, _ in found}) == 1 else None

    def _genotype(self, obs: dict[str, Any], gene: str, base: Finding) -> Finding:
        table = self.knowledge.genes.get(gene)
        candidates = value_texts(obs)
        if not candidates:
            return replace(base, reason="the genotype has no value")
        if table is None:
            return replace(base, reason=f"no allele table for {gene}")
        readable = []
        for text in candidates:
            other = gene_in_text(text, self.knowledge)
            if other and other != gene:
                return replace(base, reason=f"the value '{text}' names {other}, not {gene}")
            if normalise_diplotype(text, gene) is not None:
                readable.append(_score(text, table))
        if not readable:
            return replace(
                base, reason=f"'{candidates[0]}' is not a diplotype the service can read"
            )
        # The text and the codes of one result must say the same diplotype.
        if len({s.diplotype for s in readable}) > 1:
            return replace(
                base,
                diplotype=readable[0].diplotype,
                reason="the values of this result name different diplotypes ("
                + ", ".join(sorted({s.diplotype for s in readable}))
                + ")",
            )
        return self._acting(scored(base, readable[0]))


def scored(base: Finding, result: Scored) -> Finding:
    return replace(
        base,
        phenotype=result.phenotype,
        diplotype=result.diplotype,
        activity_score=result.activity_score,
        activity_score_text=result.activity_score_text,
        score_range=result.score_range,
        reason=result.reason,
    )


def _haplotype(obs: dict[str, Any], gene: str, base: Finding) -> Finding:
    for text in value_texts(obs):
        allele = normalise_allele(text, gene)
        if allele is None:  # a PharmVar display such as 'CYP2D6*4.001 (PV00123)'
            m = re.search(r"\*[0-9]+[A-Za-z]?(?:\.[0-9]+)?(?:[xX×](?:[0-9]+|[Nn]|≥3))?", text)
            allele = normalise_allele(m.group(0), gene) if m else None
        if allele:
            return replace(base, diplotype=allele)
    return replace(base, reason="no star allele in the value")


#: How much of a performer's name is kept (a lab's name, not a page).
MAX_PERFORMER = 120


def _component_texts(component: dict[str, Any]) -> list[str]:
    """A component's value as text (a coding's code and display, its text, a string)."""
    value = component.get("valueCodeableConcept")
    out = [as_str(component.get("valueString")), *texts(value)]
    return [t for t in out if t]


def performer_of(obs: dict[str, Any]) -> str | None:
    """Who reported a result: the first performer's display (the lab), if one is given."""
    for performer in objects(obs.get("performer")):
        display = as_str(performer.get("display")).strip()
        if display:
            return display[:MAX_PERFORMER]
    return None


def gene_of(obs: dict[str, Any], knowledge: Knowledge) -> str | None:
    """The gene a result is about: the gene-studied component, else the only gene named."""
    found = component_genes(obs, knowledge)
    if not found:
        for text in texts(obs.get("code")) + value_texts(obs):
            gene = gene_in_text(text, knowledge)
            if gene:
                found.add(gene)
    return found.pop() if len(found) == 1 else None


def component_genes(obs: dict[str, Any], knowledge: Knowledge) -> set[str]:
    """The genes a result's gene-studied components (LOINC 48018-6) name."""
    result_codes = knowledge.result_codes
    wanted = set(result_codes.gene_component_codes)
    found: set[str] = set()
    for comp in objects(obs.get("component")):
        if not set(codes(comp.get("code"))) & wanted:
            continue
        value = as_dict(comp.get("valueCodeableConcept"))
        for coding in objects(value.get("coding")):
            code = as_str(coding.get("code"))
            code = code if code.startswith("HGNC:") else f"HGNC:{code}"
            if code in result_codes.genes:
                found.add(result_codes.genes[code])
        if not found:
            for text in texts(value):
                gene = gene_in_text(text, knowledge)
                if gene:
                    found.add(gene)
    return found


def gene_in_text(text: str, knowledge: Knowledge) -> str | None:
    hits = {s for s, pattern in knowledge.gene_patterns if pattern.search(text[:MAX_TEXT])}
    return hits.pop() if len(hits) == 1 else None


#: How much of one free-text value is searched for a gene name.
MAX_TEXT = 1000
