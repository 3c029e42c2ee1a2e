"""The star-allele grammar: diplotypes as labs write them, scored with the CPIC allele tables.

A diplotype is two haplotypes separated by ``/``. A haplotype is one star allele or, for
CYP2D6 structural variants, several joined by ``+`` (a tandem or hybrid arrangement such as
``*36+*10`` or ``*68+*4``). Each allele may carry a sub-allele number (``*4.001``), a legacy
letter (``*35B``) and a copy number: ``x2``, ``x3``, ``x≥3`` or ``xN`` (unknown, at least two).
Lab spellings are accepted: the gene symbol before each allele (``CYP2D6*4``), spaces, lower
case, ``×`` or ``X`` for copies, ``>=`` for ``≥``.

Scoring (CPIC/PharmVar):

* an allele's activity comes from the CPIC table, the duplication's own row where CPIC lists
  one (``*2x2``, ``*41x3``), three or more copies from the ``x≥3`` row; copies of a
  no-function allele stay at 0;
* a tandem or hybrid haplotype scores the sum of its parts (``*36`` and ``*68`` are
  non-functional, so ``*36+*10`` is 0.25 and ``*68+*4`` is 0);
* ``xN`` is read both ways CPIC scores copy numbers (x2 and x≥3): the phenotype is called only
  when every reading gives the same one; otherwise the result is indeterminate and the
  possible readings are given as the reason.

Anything the tables cannot score (an unknown allele, one of uncertain function, a copy number
CPIC has no value for) is indeterminate: no alert rather than a wrong one.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from ..core.wording import number
from ..knowledge.models import Allele, GeneTable

INDETERMINATE = "Indeterminate"
#: The longest genotype or allele text read ('CYP2D6 *1/*2x2' and the like are a few dozen
#: characters); a longer one is not a diplotype the service can read (indeterminate).
MAX_TEXT = 1_024

_PART = re.compile(r"\*(\d+)([A-WYZ]{0,2})(?:\.\d+)?(?:X(\d+|N|≥3))?")
_HAPLOTYPE = re.compile(rf"{_PART.pattern}(?:\+{_PART.pattern})*")


@dataclass(frozen=True)
class Scored:
    diplotype: str  # normalised, e.g. "*1/*2x2", "*36+*10/*10"
    phenotype: str
    activity_score: float | None = None
    activity_score_at_least: bool = False
    #: possible activity scores when copy number is unknown (low, high; high None = open)
    score_range: tuple[float, float | None] | None = None
    reason: str = ""  # why it is indeterminate, if it is

    @property
    def activity_score_text(self) -> str | None:
        if self.activity_score is None:
            return None
        text = number(self.activity_score)
        if self.score_range is not None and self.score_range[1] != self.score_range[0]:
            high = self.score_range[1]
            return f"{text}–{number(high)}" if high is not None else f"≥{text}"
        return ("≥" if self.activity_score_at_least else "") + text


def _clean(raw: str, gene: str) -> str:
    text = re.sub(re.escape(gene), " ", raw, flags=re.IGNORECASE)
    text = text.upper().replace("×", "X").replace(">=", "≥").replace("(", "").replace(")", "")
    return re.sub(r"\s+", "", text)


def normalise_diplotype(raw: str, gene: str) -> tuple[str, str] | None:
    """'CYP2D6 *1/*2x2' -> ('*1', '*2x2'); '*36+*10/*10' -> ('*36+*10', '*10').

    Sub-alleles keep the core allele (``*4.001`` -> ``*4``). None when the text is not a
    two-haplotype star diplotype.
    """
    if len(raw) > MAX_TEXT:
        return None
    parts = _clean(raw, gene).split("/")
    if len(parts) != 2:
        return None
    first, second = (_haplotype(part) for part in parts)
    return (first, second) if first is not None and second is not None else None


def normalise_allele(raw: str, gene: str) -> str | None:
    """One haplotype ('CYP2D6*4.001', '*36+*10') in normal form, or None."""
    return None if len(raw) > MAX_TEXT else _haplotype(_clean(raw, gene))


def _haplotype(text: str) -> str | None:
    """A cleaned haplotype ('*36+*10', '*2X2', '*4.001') in normal form, or None."""
    if not _HAPLOTYPE.fullmatch(text):
        return None
    alleles = []
    for m in _PART.finditer(text):
        copies = m.group(3)
        alleles.append(f"*{m.group(1)}{m.group(2)}" + (f"x{copies}" if copies else ""))
    return "+".join(alleles)


def score_diplotype(raw: str, table: GeneTable) -> Scored:
    """Diplotype -> activity score and phenotype, or Indeterminate with a reason."""
    pair = normalise_diplotype(raw, table.gene)
    if pair is None:
        return Scored(
            raw, INDETERMINATE, reason=f"'{raw}' is not a {table.gene} star-allele diplotype"
        )
    diplotype = "/".join(pair)
    if table.scoring == "function_pair":
        return _function_pair(pair, diplotype, table)

    readings: list[list[tuple[float, bool]]] = []
    for haplotype in pair:
        values = _haplotype_values(haplotype, table)
        if isinstance(values, str):
            return Scored(diplotype, INDETERMINATE, reason=values)
        readings.append(values)
    totals = sorted(
        {(a[0] + b[0], a[1] or b[1]) for a, b in itertools.product(*readings)},
    )
    phenotypes = {_phenotype(total, at_least, table) for total, at_least in totals}
    low, low_at_least = totals[0]
    high, high_at_least = totals[-1]
    if len(totals) == 1:
        phenotype = phenotypes.pop()
        reason = "" if phenotype != INDETERMINATE else f"activity score {low:g} falls in no band"
        return Scored(diplotype, phenotype, low, low_at_least, reason=reason)
    score_range = (low, None if high_at_least else high)
    if len(phenotypes) == 1 and INDETERMINATE not in phenotypes:
        return Scored(diplotype, phenotypes.pop(), low, low_at_least, score_range)
    readings_text = " or ".join(
        f"{'≥' if at_least else ''}{number(total)} ({_phenotype(total, at_least, table).lower()})"
        for total, at_least in totals
    )
    return Scored(
        diplotype,
        INDETERMINATE,
        low,
        low_at_least,
        score_range,
        reason=f"the copy number is not known: activity score {readings_text}",
    )


def _function_pair(pair: tuple[str, str], diplotype: str, table: GeneTable) -> Scored:
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


def _haplotype_values(haplotype: str, table: GeneTable) -> list[tuple[float, bool]] | str:
    """The haplotype's possible activity values (several only for ``xN``), or the reason it
    has none."""
    sums: set[tuple[float, bool]] = {(0.0, False)}
    for allele in haplotype.split("+"):
        values = _allele_values(allele, table)
        if not values:
            return f"allele {allele} has no CPIC activity value (unknown or uncertain function)"
        sums = {(s + v, a or b) for s, a in sums for v, b in values}
    return sorted(sums)


def _allele_values(allele: str, table: GeneTable) -> list[tuple[float, bool]]:
    core, _, copies = allele.partition("x")
    if copies == "N":  # unknown copy number, at least two: read as x2 and as x≥3
        readings = [_allele_value(f"{core}x2", table), _allele_value(f"{core}x≥3", table)]
        return [] if None in readings else sorted({r for r in readings if r is not None})
    value = _allele_value(allele, table)
    return [value] if value is not None else []


def _allele_value(allele: str, table: GeneTable) -> tuple[float, bool] | None:
    entry = _entry(allele, table)
    core, _, copies = allele.partition("x")
    if entry is None and copies.isdigit() and int(copies) >= 3:
        entry = _entry(f"{core}x≥3", table)
    if entry is None and copies:
        single = _value(_entry(core, table))
        if single is not None and single[0] == 0 and not single[1]:
            return single  # copies of a no-function allele have no function
    return _value(entry)


def _value(entry: Allele | None) -> tuple[float, bool] | None:
    if entry is None or entry.activity_value is None:
        return None
    value = entry.activity_value.strip()
    if value.lower() == "n/a" or not value:
        return None
    return float(value.lstrip("≥")), value.startswith("≥")


def _entry(allele: str, table: GeneTable) -> Allele | None:
    """The table entry for an allele; legacy letter suffixes ('*35B') fall back to the core
    allele ('*35') when CPIC lists only that."""
    entry = table.alleles.get(allele)
    if entry is None:
        entry = table.alleles.get(re.sub(r"^(\*\d+)[A-Z]+", r"\1", allele))
    return entry


def _phenotype(total: float, at_least: bool, table: GeneTable) -> str:
    phenotype = _band(total, table)
    if at_least and phenotype != INDETERMINATE:
        # "≥x" is callable only when the band of x is open-ended (ultrarapid)
        band = next(b for b in table.phenotype_bands if b.phenotype == phenotype)
        if band.max is not None:
            return INDETERMINATE
    return phenotype


def _band(score: float, table: GeneTable) -> str:
    for band in table.phenotype_bands:
        if score >= band.min and (band.max is None or score <= band.max):
            return band.phenotype
    return INDETERMINATE
