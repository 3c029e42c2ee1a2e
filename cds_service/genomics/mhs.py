"""Malignant hyperthermia susceptibility: RYR1 and CACNA1S results as labs report them.

CPIC (Gonsalves et al. 2019) calls a patient "Malignant Hyperthermia Susceptibility" when
either gene carries one variant it classifies as MH-associated; without one, "Uncertain
Susceptibility", which does not exclude susceptibility and carries no drug advice of its own.
The rules are data (``knowledge/rules/mhs_variants.json``): CPIC's variant list, the lab
classifications and the interpretation phrases read. A result reads as susceptible when

* it names a variant on CPIC's list as MH-associated (c. HGVS on the gene's transcript,
  rsID, or GRCh38 g. HGVS: a Genomics Reporting IG variant Observation's components, or a
  genotype's value such as ``c.7300G>A`` or PharmCAT's ``Reference/c.7300G>A``);
* the lab classifies the variant it reports as pathogenic or likely pathogenic (component
  53037-8, or a diagnostic implication derived from the variant), whether or not the list on
  file names it (CPIC's list grows; the lab has read the current one);
* its interpretation says so ("Malignant hyperthermia susceptible", CPIC's term with or
  without the gene symbol, "Increased risk of developing malignant hyperthermia").

Anything else (a variant of uncertain significance, a benign one, none found, CPIC's
"Uncertain Susceptibility", words the rules do not know) is indeterminate: no card, and the
trace gives the reason. Where the lab's classification and CPIC's list disagree, the more
cautious reading (susceptible) is taken and the result's notes say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..knowledge.loader import Knowledge
from .star_alleles import INDETERMINATE

#: c. HGVS of a substitution, deletion, duplication or insertion ("c.7300G>A", "c.1021_1023del")
_C_HGVS = re.compile(
    r"(?<![A-Za-z0-9])c\.[0-9][0-9_+\-*]*(?:[ACGT]>[ACGT]|del[ACGT]*|dup[ACGT]*|ins[ACGT]+)?", re.I
)
_RSID = re.compile(r"(?<![A-Za-z0-9])rs\d{1,12}(?!\d)", re.I)
_G_HGVS = re.compile(r"NC_0000(?:01|19)\.\d+:g\.\d+[ACGT]>[ACGT]", re.I)
_PHRASE_CLEAN = re.compile(r"[\s:;,()\[\]\-_/.]+")
#: The longest text read for variant names or phrases.
MAX_TEXT = 1_000


@dataclass(frozen=True)
class MhsReading:
    phenotype: str  # the MHS phenotype, or INDETERMINATE
    shown: str | None  # the variant(s) as the card shows them ("c.7300G>A (rs121918593)")
    reason: str = ""  # why it is indeterminate
    note: str = ""  # what the card should say (a disagreement, a variant not on the list)


def is_mhs_gene(gene: str, knowledge: Knowledge) -> bool:
    return gene in knowledge.mhs.genes


def identifiers(texts: list[str]) -> list[str]:
    """Variant identifiers named in ``texts`` (c. HGVS, rsIDs, g. HGVS), in order, once each."""
    found: list[str] = []
    for text in texts:
        text = text[:MAX_TEXT]
        for pattern in (_C_HGVS, _RSID, _G_HGVS):
            for m in pattern.finditer(text):
                value = m.group(0)
                if value.lower() not in {f.lower() for f in found}:
                    found.append(value)
    return found


def significance_of(words: list[str], codes: list[str], knowledge: Knowledge) -> str | None:
    """The lab's classification of a variant: 'pathogenic', 'likely pathogenic',
    'uncertain significance', 'likely benign', 'benign' (by LOINC answer, else words)."""
    table = knowledge.mhs.significance
    coded = {table[c] for c in codes if c in table}
    if len(coded) == 1:
        return coded.pop()
    for text in words:
        lowered = _PHRASE_CLEAN.sub(" ", text[:MAX_TEXT].lower()).strip()
        if re.fullmatch(r"(likely )?pathogenic", lowered):
            return lowered
        if lowered in ("uncertain significance", "variant of uncertain significance", "vus"):
            return "uncertain significance"
        if re.fullmatch(r"(likely )?benign", lowered):
            return lowered
    return None


def read_variants(
    gene: str,
    names: list[str],
    significance: str | None,
    knowledge: Knowledge,
    *,
    absent: bool = False,
) -> MhsReading:
    """A result that names variants (``names``: c. HGVS, rsIDs, g. HGVS) with the lab's
    ``significance`` of them, if given; ``absent``: the lab reports the variant not found."""
    rules = knowledge.mhs
    listed = knowledge.mhs_variants.get(gene, {})
    shown = ", ".join(names) or None
    if absent:
        return MhsReading(
            INDETERMINATE, shown, f"{gene} {shown or 'variant'}: {rules.no_card['absent']}"
        )
    classes = {n: listed[n.lower()] for n in names if n.lower() in listed}
    on_list = sorted(n for n, c in classes.items() if c == "mhs")
    lab_says = significance in ("pathogenic", "likely pathogenic")
    if on_list:
        note = ""
        if significance is not None and not lab_says:
            note = (
                f"the lab classifies {gene} {', '.join(on_list)} as {significance}, but CPIC "
                "lists it as MH-associated: the more cautious reading (susceptible) is followed"
            )
        return MhsReading(rules.phenotype, shown, note=note)
    if lab_says:
        note = f"the lab classifies {gene} {shown or 'the variant'} as {significance}" + (
            "; it is not on CPIC's list on file (which lacks CPIC's December 2023 "
            "additions): the lab's classification is followed"
            if not classes
            else f"; CPIC's list on file calls it {next(iter(classes.values()))}: the more "
            "cautious reading (susceptible) is followed"
        )
        return MhsReading(rules.phenotype, shown, note=note)
    if significance == "uncertain significance" or "uncertain" in classes.values():
        why = rules.no_card["uncertain significance"]
    elif significance in ("benign", "likely benign") or "normal" in classes.values():
        why = rules.no_card["benign"]
    else:
        why = rules.no_card["not listed"]
    return MhsReading(INDETERMINATE, shown, f"{gene} {shown or 'variant'}: {why}")


def read_phrase(gene: str, text: str, knowledge: Knowledge) -> MhsReading | None:
    """An interpretation in words ("Malignant hyperthermia susceptible", CPIC's "RYR1
    Uncertain Susceptibility"), or None when the words are not such a phrase. Only a whole
    phrase counts: "not malignant hyperthermia susceptible" is no phrase (indeterminate)."""
    rules = knowledge.mhs
    lowered = _PHRASE_CLEAN.sub(" ", text[:MAX_TEXT].lower()).strip()
    lowered = knowledge.mhs_gene_words.sub(" ", lowered)  # "RYR1 Uncertain Susceptibility"
    lowered = " ".join(lowered.split())
    if lowered in rules.phenotype_phrases:
        return MhsReading(rules.phenotype, None)
    if lowered in rules.no_card:
        return MhsReading(INDETERMINATE, None, f"{gene} '{text[:120]}': {rules.no_card[lowered]}")
    return None
