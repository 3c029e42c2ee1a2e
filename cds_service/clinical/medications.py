"""Which covered drugs a draft order contains.

RxNorm codes first (ingredient, clinical or branded product, combination products); then
the other drug codes the knowledge lists (WHO ATC per ingredient and combination, the N02AJ
group read as its ingredients; SNOMED CT and UK dm+d products and ingredients; a site's own
codes from its site file); the coding display or text only where no code is known to us. In
text, a negated
mention ("non-codeine analgesic", "oxycodone (not codeine)", "codeine-free cough syrup")
names no drug: a drug named only so in the order's texts is not identified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..core.errors import ClientError
from ..fhir.hook_context import DraftOrder
from ..fhir.values import objects
from ..knowledge.loader import Knowledge

RXNORM_SYSTEMS = frozenset(
    {
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "https://www.nlm.nih.gov/research/umls/rxnorm",
        "urn:oid:2.16.840.1.113883.6.88",
    }
)


@dataclass(frozen=True)
class IdentifiedDrug:
    drug: str  # ingredient name as in knowledge/drugs.json, e.g. "codeine"
    order: DraftOrder
    matched_by: str  # e.g. "RxNorm 993781", "ATC N02AJ06" or "text 'Tylenol with Codeine'"
    medication_text: str  # what the prescriber chose, for the card
    #: every ingredient a code beyond RxNorm says the product has (a combination's others
    #: too: 'acetaminophen'); empty for RxNorm (its product forms say it) and text
    ingredients: tuple[str, ...] = ()
    #: the strength of ``drug`` per tablet or capsule, where that code's product states it
    coded_strength_mg: float | None = None
    #: what was asked about this ordered drug once in a call, by the question: (the
    #: knowledge it was asked with, the answer); not part of its value (nor of a copy made
    #: by ``dataclasses.replace``, which starts empty)
    answers: dict[str, tuple[Any, Any]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )


def medication_text(order: DraftOrder) -> str:
    concept = order.medication or {}
    text = concept.get("text")
    if isinstance(text, str) and text:
        return text
    for coding in objects(concept.get("coding")):
        display = coding.get("display")
        if isinstance(display, str) and display:
            return display
    return ""


def identify(order: DraftOrder, knowledge: Knowledge) -> tuple[list[IdentifiedDrug], str]:
    """The drugs in ``order`` the knowledge lists, and a note on how (for the trace)."""
    concept = order.medication
    if not concept:
        return [], "the order names no medication"
    text = medication_text(order)
    codings = objects(concept.get("coding"))
    for coding in codings:
        if not isinstance(coding.get("system"), str | None):  # a list is unhashable, too
            raise ClientError(
                "the hook context is invalid",
                details=[
                    {
                        "field": f"{order.reference or 'order'}: medication coding.system",
                        "problem": "must be a string (a URI)",
                    }
                ],
            )
        if (
            coding.get("system") in RXNORM_SYSTEMS
            and str(coding.get("code", "")) in knowledge.products
        ):
            code = str(coding["code"])
            drugs = sorted(knowledge.products[code])
            return [IdentifiedDrug(d, order, f"RxNorm {code}", text) for d in drugs], (
                f"RxNorm {code} contains {', '.join(drugs)}"
            )
    for coding in codings:
        system, raw = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(raw, str | int) or isinstance(raw, bool):
            continue
        coded = str(raw)
        product = knowledge.coded_product(system, coded)
        if product is None:
            continue
        drugs = sorted(set(product.ingredients) & knowledge.drugs.keys())
        if not drugs:
            continue
        what = f"{knowledge.code_systems.get(system, system)} {coded.strip()}"
        return [
            IdentifiedDrug(
                d,
                order,
                what,
                text or product.name,
                tuple(product.ingredients),
                product.strengths.get(d),
            )
            for d in drugs
        ], f"{what} ({product.name}) contains {', '.join(drugs)}"
    candidates = [text] + [c["display"] for c in codings if isinstance(c.get("display"), str)]
    index = _name_index(knowledge)
    mentions = [(candidate, *_drugs_named(candidate, index)) for candidate in candidates]
    # A negated mention does not count; a drug a text names only so ("non-codeine analgesic")
    # is not taken from another text of the order either ("codeine 30 mg"): they disagree, and
    # when in doubt, no drug.
    negated = {d for _, named, neg in mentions for d in neg - named}
    also = f" ({', '.join(sorted(negated))} only negated: not counted)" if negated else ""
    for candidate, named, _ in mentions:
        drugs = sorted(named - negated)
        if drugs:
            return [IdentifiedDrug(d, order, f"text '{candidate}'", text) for d in drugs], (
                f"no known RxNorm code; the text '{candidate}' names {', '.join(drugs)}{also}"
            )
    if negated:
        return [], (
            f"no known RxNorm code; the text names {', '.join(sorted(negated))} only in negated "
            "form ('non-', 'not', 'no', 'without', '-free'): no drug identified"
        )
    return [], "no covered drug in the order's codes or text"


def named_in_codes(concept: dict[str, Any], knowledge: Knowledge) -> list[str]:
    """Every ingredient the codes beyond RxNorm of a medication concept name (ATC, SNOMED
    CT / dm+d, a site's own), as the knowledge spells them: how interacting drugs recorded
    with those codes are found."""
    found: list[str] = []
    for coding in objects(concept.get("coding")):
        system, code = coding.get("system"), coding.get("code")
        if isinstance(system, str) and isinstance(code, str) and system not in RXNORM_SYSTEMS:
            product = knowledge.coded_product(system, code)
            found += product.ingredients if product is not None else []
    return found


@lru_cache(maxsize=8)
def _name_index(knowledge: Knowledge) -> tuple[re.Pattern[str], dict[str, str]]:
    """One pattern for every drug name and brand (one pass over the text), and which drug
    each word names. Longer words first, so 'dihydrocodeine' is never read as 'codeine'."""
    words: dict[str, str] = {}
    for name, drug in knowledge.drugs.items():
        for word in [name, *drug.brands]:
            words.setdefault(word.lower(), name)
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b"), words


# A drug name or brand sits at the start of a medication's text; reading further would only
# cost time (a 4.8 MB text took seconds of CPU against every name pattern).
MAX_TEXT_READ = 500


# A name directly preceded by one of these words, or followed by "-free" / " free", is negated.
_HYPHEN = "-\u2010\u2011"  # hyphen-minus, hyphen, non-breaking hyphen (first: literal in [])
_NEGATED_BEFORE = re.compile(rf"(?<![{_HYPHEN}\w])(?:non[{_HYPHEN}\s]|(?:not|no|without)\s+)$")
_NEGATED_AFTER = re.compile(rf"[{_HYPHEN}\s]free\b")
_BEFORE_CHARS = 16  # enough for "without" and a few spaces


def negated_at(lowered: str, start: int, end: int) -> bool:
    """Is the name at ``lowered[start:end]`` negated ("non-codeine", "codeine-free")?"""
    # (search with pos/endpos: the lookbehind still sees the text before ``pos``)
    before = _NEGATED_BEFORE.search(lowered, max(0, start - _BEFORE_CHARS), start)
    return bool(before or _NEGATED_AFTER.match(lowered, end))


def _drugs_named(
    text: str, index: tuple[re.Pattern[str], dict[str, str]]
) -> tuple[set[str], set[str]]:
    """The drugs ``text`` names plainly, and those it names in negated form ("non-codeine",
    "codeine-free"); a drug named both ways is in both."""
    lowered = text[:MAX_TEXT_READ].lower()
    named: set[str] = set()
    negated: set[str] = set()
    if not lowered:
        return named, negated
    pattern, words = index
    for m in pattern.finditer(lowered):
        (negated if negated_at(lowered, m.start(), m.end()) else named).add(words[m.group(0)])
    return named, negated
