"""Phenotypes: from a diplotype (CPIC allele tables) or from a reported metabolizer status.

A diplotype the tables cannot score (an unknown allele, an allele of uncertain function,
an unsupported copy number) gives ``Indeterminate``: no alert rather than a wrong one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .knowledge import Allele, GeneTable

INDETERMINATE = "Indeterminate"

# A reported phenotype is read only when the whole text is one of these phrases (after the
# gene symbol and punctuation are removed): "not a poor metabolizer", "probable poor
# metabolizer" or "poor/intermediate" must never become "Poor Metabolizer".
_PHENOTYPE_WORDS = {
    "ultrarapid": "Ultrarapid Metabolizer",
    "ultra rapid": "Ultrarapid Metabolizer",
    "rapid": "Rapid Metabolizer",
    "normal": "Normal Metabolizer",
    "extensive": "Normal Metabolizer",  # the term before CPIC's 2017 standardisation
    "intermediate": "Intermediate Metabolizer",
    "poor": "Poor Metabolizer",
    "likely intermediate": "Likely Intermediate Metabolizer",  # CPIC's own terms (CYP2C19)
    "likely poor": "Likely Poor Metabolizer",
}
_ABBREVIATIONS = {
    "um": "Ultrarapid Metabolizer",
    "rm": "Rapid Metabolizer",
    "nm": "Normal Metabolizer",
    "em": "Normal Metabolizer",
    "im": "Intermediate Metabolizer",
    "pm": "Poor Metabolizer",
}
_PHRASE = re.compile(
    r"(?:predicted |phenotype )?(?P<word>"
    + "|".join(sorted(_PHENOTYPE_WORDS, key=len, reverse=True))
    + r") metaboli[sz]er(?: phenotype| status)?(?: predicted)?"
)


def phenotype_from_text(
    text: str, gene: str | None = None, other_genes: frozenset[str] = frozenset()
) -> str | None:
    """'Ultrarapid metabolizer' -> 'Ultrarapid Metabolizer'; anything else -> None.

    Only a plain metabolizer phrase, optionally with the result's own ``gene`` symbol, is
    accepted; hedged, negated, combined or unknown wording, or text naming another gene
    (``other_genes``), gives None, so it never alerts.
    """
    lowered = text.lower()
    if any(g.lower() in lowered for g in other_genes if g != gene):
        return None
    if gene:
        lowered = lowered.replace(gene.lower(), " ")
    lowered = re.sub(r"[\s:;,()\[\]\-_/]+", " ", lowered).strip()
    if lowered in _ABBREVIATIONS:
        return _ABBREVIATIONS[lowered]
    m = _PHRASE.fullmatch(lowered)
    return _PHENOTYPE_WORDS[m.group("word")] if m else None


@dataclass(frozen=True)
class Scored:
    diplotype: str  # normalised, e.g. "*1/*2x2"
    phenotype: str
    activity_score: float | None = None
    activity_score_at_least: bool = False
    reason: str = ""  # why it is indeterminate, if it is

    @property
    def activity_score_text(self) -> str | None:
        if self.activity_score is None:
            return None
        return ("≥" if self.activity_score_at_least else "") + f"{self.activity_score:.2f}".rstrip(
            "0"
        ).rstrip(".")


_STAR = re.compile(r"^\*[0-9]+[A-Z]?(?:\.[0-9]+)?(?:x(?:[0-9]+|N|≥3))?$")


def normalise_diplotype(raw: str, gene: str) -> tuple[str, str] | None:
    """Split 'CYP2D6 *1/*2x2', '*1/*4', 'CYP2D6*1/CYP2D6*4' into ('*1', '*2x2').

    Suballeles like '*1.001' keep the core allele ('*1'). Returns None when the text is
    not a two-allele star diplotype.
    """
    text = raw.replace(gene, " ").replace(" ", "").replace("×", "x").replace("X", "x")
    text = text.replace(">=", "≥")
    parts = text.split("/")
    if len(parts) != 2:
        return None
    alleles = []
    for part in parts:
        if not _STAR.match(part):
            return None
        core, _, copies = part.partition("x")
        core = re.sub(r"\.[0-9]+$", "", core)
        alleles.append(core + (f"x{copies}" if copies else ""))
    return alleles[0], alleles[1]


def score_diplotype(raw: str, table: GeneTable) -> Scored:
    """Diplotype -> activity score and phenotype, or Indeterminate with a reason."""
    pair = normalise_diplotype(raw, table.gene)
    if pair is None:
        return Scored(
            raw, INDETERMINATE, reason=f"'{raw}' is not a {table.gene} star-allele diplotype"
        )
    diplotype = "/".join(pair)
    if table.scoring == "function_pair":
        functions = []
        for allele in pair:
            entry = _entry(allele, table)
            if entry is None:
                return Scored(
                    diplotype, INDETERMINATE, reason=f"allele {allele} is not in the CPIC table"
                )
            functions.append(entry.function)
        phenotype = table.function_pairs.get(" / ".join(sorted(functions)), INDETERMINATE)
        reason = "" if phenotype != INDETERMINATE else f"CPIC assigns no phenotype to {diplotype}"
        return Scored(diplotype, phenotype, reason=reason)

    total = 0.0
    at_least = False
    for allele in pair:
        value = _allele_activity(allele, table)
        if value is None:
            return Scored(
                diplotype,
                INDETERMINATE,
                reason=f"allele {allele} has no CPIC activity value "
                "(unknown or uncertain function)",
            )
        total += value[0]
        at_least = at_least or value[1]
    phenotype = _band(total, table)
    reason = "" if phenotype != INDETERMINATE else f"activity score {total:g} falls in no CPIC band"
    return Scored(diplotype, phenotype, total, at_least, reason)


def phenotype_for_score(score: float, table: GeneTable) -> str:
    return _band(score, table)


def _entry(allele: str, table: GeneTable) -> Allele | None:
    """The table entry for an allele; legacy letter suffixes ('*35B') fall back to the core
    allele ('*35') when CPIC lists only that."""
    entry = table.alleles.get(allele)
    if entry is None:
        entry = table.alleles.get(re.sub(r"^(\*\d+)[A-Z]", r"\1", allele))
    return entry


def _allele_activity(allele: str, table: GeneTable) -> tuple[float, bool] | None:
    entry = _entry(allele, table)
    if entry is None and "x" in allele:
        core, _, copies = allele.partition("x")
        if copies.isdigit() and int(copies) >= 3:
            entry = _entry(f"{core}x≥3", table)
    if entry is None or entry.activity_value is None:
        return None
    value = entry.activity_value.strip()
    if value.lower() == "n/a" or not value:
        return None
    return float(value.lstrip("≥")), value.startswith("≥")


def _band(score: float, table: GeneTable) -> str:
    for band in table.phenotype_bands:
        if score >= band.min and (band.max is None or score <= band.max):
            return band.phenotype
    return INDETERMINATE
