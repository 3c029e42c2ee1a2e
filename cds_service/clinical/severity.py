"""How severe a guideline row's advice is: the card indicator it gives, and an order of
severity for choosing between readings of a patient's results (the more cautious wins).

Indicator, from the guideline's action and strength:

=================  ==========================  =========
action             strength                    indicator
=================  ==========================  =========
avoid              strong (CPIC), ungraded     critical
                   (DPWG)
avoid              moderate / optional         warning
alternative        any                         warning
adjust-dose        any                         warning
caution            any                         info
standard, no-rec.  -                           no card
=================  ==========================  =========

A row may name its own indicator where the action's default does not fit (CPIC's cautious
continuation of carbamazepine after more than 3 months: a ``caution`` shown as ``warning``).

DPWG grades no single recommendation (its rows are ``ungraded``; its own classification is of
genotyping for the pair). Its rows say ``avoid`` only where DPWG says the drug is
contraindicated or must not be used (codeine above its dose limit in an ultrarapid
metabolizer, carbamazepine with HLA-B*15:02): a critical card, as CPIC's strong "avoid". Its
"choose an alternative" (or "avoid if an alternative is possible") is ``alternative``, a
warning; a dose is ``adjust-dose``, a warning; "be alert to a reduced effect" is ``caution``.
"""

from __future__ import annotations

from ..knowledge.loader import Knowledge
from ..knowledge.models import Recommendation

#: indicators from none to the most severe
LEVELS: dict[str | None, int] = {None: 0, "info": 1, "warning": 2, "critical": 3}
#: guideline actions from the mildest to the most severe
ACTIONS = {
    "no-recommendation": 0,
    "standard": 1,
    "caution": 2,
    "adjust-dose": 3,
    "alternative": 4,
    "avoid": 5,
}
#: the guideline's strengths from the weakest
STRENGTHS = {"none": 0, "label": 1, "optional": 1, "moderate": 2, "ungraded": 2, "strong": 3}
#: the advice of each guideline action, in the words of the prescribing card's summary
ADVICE = {
    "avoid": "Avoid",
    "alternative": "Consider an alternative",
    "adjust-dose": "Adjust dose",
    "caution": "Reduced or uncertain response possible",
    "standard": "Label dosing",
    "no-recommendation": "No genotype-based advice",
}


def advice(rec: Recommendation) -> str:
    """A row's advice in a few words: its own summary wording where it has one."""
    if rec.summary:
        words = rec.summary.format(drug="", Drug="").lstrip(": ").strip()
        return words[:1].upper() + words[1:]
    return ADVICE[rec.action]


def most_severe(a: str | None, b: str | None) -> str | None:
    return a if LEVELS[a] >= LEVELS[b] else b


def indicator(rec: Recommendation) -> str | None:
    if rec.indicator is not None:  # the row's own, where the action's default does not fit
        return rec.indicator
    if rec.action == "avoid":
        return "critical" if rec.strength in ("strong", "ungraded") else "warning"
    if rec.action in ("alternative", "adjust-dose"):
        return "warning"
    if rec.action == "caution":
        return "info"
    return None


def _at_least_as_impaired(row: Recommendation, other: Recommendation, knowledge: Knowledge) -> bool:
    """Is every gene of ``row`` as far from normal as in ``other``, in the same direction
    (``rules/phenotype_order.json``)?"""
    if set(row.when) != set(other.when):
        return False
    for gene, cond in row.when.items():
        mine = knowledge.direction(cond.phenotype or "")
        theirs = knowledge.direction(other.when[gene].phenotype or "")
        if mine is None or theirs is None:
            return False
        if theirs[0] != 0 and theirs[0] != mine[0]:
            return False
        if mine[1] < theirs[1]:
            return False
    return True


def indicator_with_floor(rec: Recommendation, knowledge: Knowledge) -> str | None:
    """The row's indicator, never milder than that of a row of the same drug whose result is
    less impaired (CPIC's strengths can make PM x PM milder than PM x NM for amitriptyline).
    Worked out once per row (it depends on the rows alone)."""
    level: str | None = knowledge.remembered("indicator floor").get(
        rec.id, lambda: _with_floor(rec, knowledge)
    )
    return level


def _with_floor(rec: Recommendation, knowledge: Knowledge) -> str | None:
    level = indicator(rec)
    if level is None:
        return None
    for other in knowledge.recommendations_for(rec.drug):
        if other.guideline != rec.guideline or other.dose_limit is not None:
            continue  # (another guideline's strengths say nothing of this one's; advice above
            # a dose limit nothing of the advice within it)
        if other.id != rec.id and _at_least_as_impaired(rec, other, knowledge):
            theirs = indicator(other)
            if LEVELS[theirs] > LEVELS[level]:
                level = theirs
    return level


def spanned_indicator(possible: tuple[Recommendation, ...]) -> str:
    """For a result that spans rows with different advice: the most severe of them, at most
    ``warning`` (the result does not settle it)."""
    levels = [indicator(r) for r in possible]
    return "info" if all(lv in (None, "info") for lv in levels) else "warning"
