"""Which covered drugs a draft order contains.

RxNorm codes first (ingredient, clinical or branded product, combination products);
the coding display or text only where no RxNorm code is known to us.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .errors import ClientError
from .fhir_values import objects
from .hook_context import DraftOrder
from .knowledge import Knowledge

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
    matched_by: str  # e.g. "RxNorm 993781" or "text 'Tylenol with Codeine'"
    medication_text: str  # what the prescriber chose, for the card


def medication_text(order: DraftOrder) -> str:
    concept = order.medication or {}
    if isinstance(concept.get("text"), str) and concept["text"]:
        return concept["text"]
    for coding in objects(concept.get("coding")):
        if isinstance(coding.get("display"), str) and coding["display"]:
            return coding["display"]
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
    candidates = [text] + [c["display"] for c in codings if isinstance(c.get("display"), str)]
    for candidate in candidates:
        drugs = _drugs_named(candidate, _name_index(knowledge))
        if drugs:
            return [IdentifiedDrug(d, order, f"text '{candidate}'", text) for d in drugs], (
                f"no known RxNorm code; the text '{candidate}' names {', '.join(drugs)}"
            )
    return [], "no covered drug in the order's codes or text"


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


def _drugs_named(text: str, index: tuple[re.Pattern[str], dict[str, str]]) -> list[str]:
    lowered = text[:MAX_TEXT_READ].lower()
    if not lowered:
        return []
    pattern, words = index
    return sorted({words[m.group(0)] for m in pattern.finditer(lowered)})
