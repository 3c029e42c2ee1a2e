"""Reported metabolizer phenotypes: the words labs use, mapped to today's CPIC terms.

Diplotypes are scored in ``star_alleles``; this module reads a phenotype a lab wrote. Wording
from before CPIC's standardisation (2017; adopted by labs from about 2019) is mapped and
flagged: "extensive metabolizer" (EM) is today's normal metabolizer, but for CYP2D6 it also
covered what is now an intermediate metabolizer with activity score 1, so a genotype on file
is always re-interpreted rather than the old label trusted.
"""

from __future__ import annotations

import re

from .star_alleles import INDETERMINATE

__all__ = [
    "INDETERMINATE",
    "LEGACY_WORDS",
    "legacy_wording",
    "phenotype_from_text",
    "possible_phenotype",
    "split_score",
]

#: Words of the pre-standardisation vocabulary (CPIC term standardisation, Caudle et al. 2017).
LEGACY_WORDS = ("extensive", "em")

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
    if m:
        return _PHENOTYPE_WORDS[m.group("word")]
    # the phrase and its abbreviation, as labs print it: 'Ultrarapid Metabolizer (UM)'
    phrase, _, abbreviation = lowered.rpartition(" ")
    m = _PHRASE.fullmatch(phrase)
    if m and _ABBREVIATIONS.get(abbreviation) == _PHENOTYPE_WORDS[m.group("word")]:
        return _ABBREVIATIONS[abbreviation]
    return None  # also when the two disagree: 'Poor Metabolizer (UM)'


_POSSIBLE = re.compile(
    r"possible (?P<word>ultra ?rapid|rapid|normal|intermediate|poor) metaboli[sz]er"
)


def possible_phenotype(text: str, gene: str | None = None) -> str | None:
    """'Possible poor metabolizer' -> 'Possible Poor Metabolizer' (CPIC's term for a phenotype
    that rests on an allele of uncertain or unknown function); anything else -> None. The
    service gives it no advice; this only names it, so the trace can say why."""
    lowered = text.lower()
    if gene:
        lowered = lowered.replace(gene.lower(), " ")
    lowered = re.sub(r"[\s:;,()\[\]\-_/]+", " ", lowered).strip()
    m = _POSSIBLE.fullmatch(lowered)
    if m is None:
        return None
    word = m.group("word").replace(" ", "")
    return f"Possible {word.capitalize()} Metabolizer"


def legacy_wording(text: str) -> bool:
    """Does a phenotype text use the pre-2019 vocabulary ('Extensive metabolizer', 'EM')?"""
    words = re.sub(r"[\s:;,()\[\]\-_/]+", " ", text.lower()).split()
    return any(w in LEGACY_WORDS for w in words)


# What labs print beside a phenotype: its activity score, or the enzyme activity in words.
# (Each starts where a run of separators starts, not again at each of its characters: a long
# run would otherwise cost time growing with its square.)
_SCORE = re.compile(
    r"(?<![\s,;(\[])[\s,;(\[]*\b(?:activity\s+score|AS)\s*[:=]?\s*"
    r"(?P<score>\d{1,2}(?:\.\d{1,3})?)\s*[)\]]?",
    re.IGNORECASE,
)
_ACTIVITY_WORDS = re.compile(
    r"(?<![\s,;(\[])[\s,;(\[]*\b(?P<word>no|absent|reduced|decreased|normal|increased)\s+"
    r"(?:enzyme\s+)?(?:activity|function)\s*[)\]]?",
    re.IGNORECASE,
)
_ACTIVITY_PHENOTYPES = {
    "no": {"Poor Metabolizer", "Likely Poor Metabolizer"},
    "absent": {"Poor Metabolizer", "Likely Poor Metabolizer"},
    "reduced": {"Intermediate Metabolizer", "Likely Intermediate Metabolizer"},
    "decreased": {"Intermediate Metabolizer", "Likely Intermediate Metabolizer"},
    "normal": {"Normal Metabolizer"},
    "increased": {"Rapid Metabolizer", "Ultrarapid Metabolizer"},
}


def split_score(
    text: str, gene: str | None = None, other_genes: frozenset[str] = frozenset()
) -> tuple[str | None, str | None]:
    """A phenotype printed with its activity score or its activity in words: ('Ultrarapid
    Metabolizer', '3.0') for 'Ultrarapid metabolizer (activity score 3.0)'. (None, None)
    when the text is no such phenotype, or when the words contradict it ('Normal metabolizer
    (no enzyme activity)'); the caller checks the score against the gene's bands."""
    score = _SCORE.search(text)
    rest = _SCORE.sub(" ", text, count=1) if score else text
    words = _ACTIVITY_WORDS.search(rest)
    rest = _ACTIVITY_WORDS.sub(" ", rest, count=1) if words else rest
    if not score and not words:
        return None, None
    phenotype = phenotype_from_text(rest, gene, other_genes)
    if phenotype is None:
        return None, None
    if words and phenotype not in _ACTIVITY_PHENOTYPES[words.group("word").lower()]:
        return None, None
    return phenotype, score.group("score") if score else None
