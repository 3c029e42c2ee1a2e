"""The FHIR Bundle a SMART Health Card holds: as little as the card needs (data minimisation,
as the SMART Health Cards IG asks), coded as the Genomics Reporting IG codes results and as
this service reads them (``genomics.result_reading``).

* ``resource:0``: the Patient, with name and birth date only.
* One Observation per gene with a usable result (one per result when a gene's results
  disagree, so that the disagreement travels with the card): a genotype (LOINC 84413-4 "Genotype
  display name", the star-allele diplotype coded with PharmVar's system) with the gene
  studied (48018-6, HGNC id) and the phenotype (53040-2 "Genetic variation's effect on drug
  metabolism", a LOINC answer) as components; a gene with a reported phenotype only is a
  phenotype result (53040-2) with the gene studied; an HLA allele is a presence result (its
  LOINC code, answer Present / Absent). The test date is the result's ``effectiveDateTime``.
* A result the service could not use (low-resolution HLA typing, a variant of uncertain
  significance, an indeterminate phenotype) is carried as reported: a genotype (84413-4)
  whose value is the typing as the lab wrote it (``valueString``: it names no PharmVar
  diplotype) and no phenotype, or, without a typing, a phenotype result (53040-2) whose
  value is the phenotype as reported; with the gene studied. A reader then sees the result
  and that it settles nothing; an unclear result never travels as no result.

No ids, no meta, no narrative, no display texts (the IG's minimisation), and ``fullUrl``
``resource:N`` with references to them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from ..knowledge.loader import Knowledge
from .build import GeneLine, Summary

LOINC = "http://loinc.org"
HGNC = "http://www.genenames.org/geneId"
PHARMVAR = "http://www.pharmvar.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
GENOTYPE = "84413-4"
PHENOTYPE = "53040-2"
GENE_STUDIED = "48018-6"
#: LOINC answers for presence results (LL2516-4... as ``genomics.hla`` reads them)
PRESENT, ABSENT = "LA9633-4", "LA9634-2"
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def bundle(summary: Summary, knowledge: Knowledge) -> dict[str, Any]:
    """The card's Bundle (type ``collection``) for ``summary``."""
    patient: dict[str, Any] = {"resourceType": "Patient"}
    if summary.name:
        patient["name"] = [{"text": summary.name}]
    if summary.birth_date:
        patient["birthDate"] = summary.birth_date
    entries = [{"fullUrl": "resource:0", "resource": patient}]
    for line in summary.genes:
        if not line.usable:  # (unclear: carried as reported)
            entries.append(
                {"fullUrl": f"resource:{len(entries)}", "resource": as_reported(line, knowledge)}
            )
            continue
        # results that disagree: each one (a reader then sees the disagreement too)
        for observation in [gene_observation(x, knowledge) for x in _each_result(line)]:
            entries.append({"fullUrl": f"resource:{len(entries)}", "resource": observation})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _each_result(line: GeneLine) -> list[GeneLine]:
    """The gene's result, or each of its results when they disagree."""
    if not line.readings:
        return [line]
    return [
        replace(
            line,
            phenotype=r.phenotype,
            diplotype=r.value if r.kind == "genotype" else None,
            date=r.date,
            readings=(),
        )
        for r in line.readings
    ]


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _answers(knowledge: Knowledge) -> dict[str, str]:
    """CPIC phenotype -> its LOINC answer (the current term's: not the pre-2019 one)."""
    out: dict[str, str] = {}
    legacy = set(knowledge.result_codes.legacy_answers)
    for code, phenotype in knowledge.result_codes.phenotype_answers.items():
        if code not in legacy:
            out.setdefault(phenotype, code)
    return out


def _hgnc(gene: str, knowledge: Knowledge) -> str | None:
    return next((h for h, g in knowledge.result_codes.genes.items() if g == gene), None)


def _presence_code(marker: str, knowledge: Knowledge) -> str | None:
    for key, kind in knowledge.result_codes.codes.items():
        system, _, code = key.partition("|")
        if kind.kind == "presence" and kind.marker == marker and system == LOINC:
            return code
    return None


def _observation(code: str, line: GeneLine) -> dict[str, Any]:
    """An Observation of ``line``'s result with LOINC ``code``: everything but its value."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [_coded(CATEGORY, "laboratory")],
        "code": _coded(LOINC, code),
        "subject": {"reference": "resource:0"},
    }
    _dated(obs, line)
    return obs


def gene_observation(line: GeneLine, knowledge: Knowledge) -> dict[str, Any]:
    """One gene's result as an Observation (see the module's notes)."""
    presence = _presence_code(line.gene, knowledge)
    if presence is not None and line.phenotype in ("positive", "negative"):
        obs = _observation(presence, line)
        obs["valueCodeableConcept"] = _coded(
            LOINC, PRESENT if line.phenotype == "positive" else ABSENT
        )
        return obs
    gene = _gene_component(line.gene, knowledge)
    phenotype = _phenotype_value(line.phenotype, knowledge)
    if line.diplotype and "*" in line.diplotype:
        obs = _observation(GENOTYPE, line)
        obs["valueCodeableConcept"] = _coded(PHARMVAR, f"{line.gene} {line.diplotype}")
        obs["component"] = [gene, {"code": _coded(LOINC, PHENOTYPE), **phenotype}]
        return obs
    obs = _observation(PHENOTYPE, line)
    obs.update(phenotype)
    obs["component"] = [gene]
    return obs


def as_reported(line: GeneLine, knowledge: Knowledge) -> dict[str, Any]:
    """An unclear result as the lab reported it (see the module's notes)."""
    obs = _observation(GENOTYPE if line.diplotype else PHENOTYPE, line)
    obs["valueString"] = line.diplotype or line.phenotype
    obs["component"] = [_gene_component(line.gene, knowledge)]
    return obs


def carries(summary: Summary) -> bool:
    """Does the card for ``summary`` carry a result (every result, clear or not, is)?"""
    return bool(summary.genes)


def _dated(obs: dict[str, Any], line: GeneLine) -> None:
    if line.date and _DATE.match(line.date):
        obs["effectiveDateTime"] = line.date


def _gene_component(gene: str, knowledge: Knowledge) -> dict[str, Any]:
    hgnc = _hgnc(gene, knowledge)
    value = _coded(HGNC, hgnc) if hgnc else {"text": gene}
    return {"code": _coded(LOINC, GENE_STUDIED), "valueCodeableConcept": value}


def _phenotype_value(phenotype: str, knowledge: Knowledge) -> dict[str, Any]:
    code = _answers(knowledge).get(phenotype)
    if code is not None:
        return {"valueCodeableConcept": _coded(LOINC, code)}
    return {"valueString": phenotype}


def genes_in(bundle_: dict[str, Any], knowledge: Knowledge) -> dict[str, dict[str, str]]:
    """What a card's Bundle says per gene (for ``--verify`` and the tests): the gene (or HLA
    allele), its genotype and phenotype and the date, read from the codes written above."""
    by_hgnc = knowledge.result_codes.genes
    phenotypes = dict(knowledge.result_codes.phenotype_answers)
    markers = {
        key.partition("|")[2]: kind.marker
        for key, kind in knowledge.result_codes.codes.items()
        if kind.kind == "presence" and kind.marker and key.startswith(LOINC + "|")
    }
    out: dict[str, dict[str, str]] = {}
    for entry in bundle_.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or res.get("resourceType") != "Observation":
            continue
        code = _first_code(res.get("code"))
        facts: dict[str, str] = {}
        gene = markers.get(code or "")
        if gene is not None:
            value = _first_code(res.get("valueCodeableConcept"))
            facts["phenotype"] = {PRESENT: "positive", ABSENT: "negative"}.get(value or "", "?")
        for comp in [res, *(c for c in res.get("component") or [] if isinstance(c, dict))]:
            comp_code = _first_code(comp.get("code"))
            value = _first_code(comp.get("valueCodeableConcept"))
            if comp_code == GENE_STUDIED:
                gene = by_hgnc.get(value or "") or _text(comp.get("valueCodeableConcept"))
            elif comp_code == GENOTYPE:
                typed = value or str(comp.get("valueString") or "")
                facts["genotype"] = typed.split(" ", 1)[-1] if value else typed
            elif comp_code == PHENOTYPE:
                facts["phenotype"] = phenotypes.get(value or "") or str(comp.get("valueString"))
        if "genotype" in facts and "phenotype" not in facts:
            facts["phenotype"] = "unclear (no phenotype given)"
        if isinstance(res.get("effectiveDateTime"), str):
            facts["date"] = res["effectiveDateTime"]
        if gene:
            out[gene] = facts
    return out


def _first_code(concept: Any) -> str | None:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if isinstance(codings, list) and codings and isinstance(codings[0], dict):
        code = codings[0].get("code")
        return code if isinstance(code, str) else None
    return None


def _text(concept: Any) -> str | None:
    text = concept.get("text") if isinstance(concept, dict) else None
    return text if isinstance(text, str) else None
