"""CDS Hooks cards from matched recommendations.

Indicator, from the guideline's action and strength:

=================  ==========================  =========
action             strength                    indicator
=================  ==========================  =========
avoid              strong                      critical
avoid              moderate / optional         warning
alternative        any                         warning
adjust-dose        any                         warning
caution            any                         info
standard, no-rec.  -                           no card
=================  ==========================  =========

Where the guideline says avoid or choose an alternative and names alternatives, the card
offers suggestions that replace the draft order (delete it, create a new draft in the same
FHIR version), ``selectionBehavior: at-most-one``.
"""

from __future__ import annotations

import uuid
from typing import Any

from .gene_decision import GeneResult
from .hook_context import DraftOrder
from .knowledge import AlternativeProduct, Knowledge, Recommendation
from .recommendations import Match

OVERRIDE_SYSTEM = "urn:pgx-pain-cds:override-reason"
TOPIC_SYSTEM = "urn:pgx-pain-cds:recommendation"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SOURCE_LABEL = "PGx Pain CDS"

OVERRIDE_REASONS = [
    ("benefit-outweighs-risk", "Benefit outweighs the risk for this patient"),
    ("tolerated-before", "Patient has taken this drug before without problems"),
    ("result-disputed", "Genetic result is wrong, outdated or not this patient's"),
    ("will-monitor", "Dose adjusted or patient will be monitored closely"),
    ("no-alternative", "No suitable alternative"),
]

_STRENGTH = {"strong": "strong", "moderate": "moderate", "optional": "optional", "none": "none"}


def indicator(rec: Recommendation) -> str | None:
    if rec.action == "avoid":
        return "critical" if rec.strength == "strong" else "warning"
    if rec.action in ("alternative", "adjust-dose"):
        return "warning"
    if rec.action == "caution":
        return "info"
    return None


def match_indicator(m: Match) -> str | None:
    """The card's indicator: the row's; for a result that spans rows with different advice,
    the most severe of them, at most ``warning`` (the result does not settle it)."""
    if not m.possible:
        return indicator(m.recommendation)
    levels = [indicator(r) for r in m.possible]
    return "info" if all(lv in (None, "info") for lv in levels) else "warning"


def build_cards(matches: list[Match], knowledge: Knowledge) -> list[dict[str, Any]]:
    cards = []
    seen: set[tuple[str, str | None]] = set()
    for m in matches:
        level = match_indicator(m)
        key = (m.recommendation.id, m.drug.order.reference)
        if level is None or key in seen:
            continue
        seen.add(key)
        cards.append(build_card(m, level, knowledge))
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(cards, key=lambda c: order[c["indicator"]])


def build_card(m: Match, level: str, knowledge: Knowledge) -> dict[str, Any]:
    rec = m.recommendation
    guideline = rec.guideline
    assert guideline is not None
    genes = "/".join(rec.genes)
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary(rec, m.results, bool(m.possible)),
        "indicator": level,
        "detail": detail(m, knowledge),
        "source": {
            "label": f"{guideline.name}: {rec.drug} and {genes} ({SOURCE_LABEL})",
            "url": guideline.url,
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": rec.id,
                "display": f"{rec.drug.capitalize()} and {genes}",
            },
        },
        "links": [
            {
                "label": f"{guideline.organization} guideline: {rec.drug} and {genes}",
                "url": guideline.url,
                "type": "absolute",
            },
            {
                "label": f"Publication (PubMed {guideline.pmid})",
                "url": f"https://pubmed.ncbi.nlm.nih.gov/{guideline.pmid}/",
                "type": "absolute",
            },
        ],
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
            for code, display in OVERRIDE_REASONS
        ],
    }
    suggestions = [
        replacement(m.drug.order, rec, knowledge.alternative_products[alt])
        for alt in rec.alternatives
        # Replace only an order we can name: a create without a delete would leave both.
        if rec.action in ("avoid", "alternative")
        and not m.possible
        and m.drug.order.is_medication_order
        and m.drug.order.reference
    ]
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    return card


def summary(rec: Recommendation, results: tuple[GeneResult, ...], spans: bool = False) -> str:
    who = " and ".join(f"{r.gene} {r.phenotype.lower()}" for r in results)
    if spans:
        text = f"{rec.drug.capitalize()}: advice depends on the activity score ({who}, no score)"
        return text if len(text) < 140 else text[:136] + "…"
    verb = {
        "avoid": "Avoid {drug}",
        "alternative": "Consider an alternative to {drug}",
        "adjust-dose": "Adjust {drug} dose",
        "caution": "{Drug}: reduced or uncertain response possible",
    }[rec.action]
    text = verb.format(drug=rec.drug, Drug=rec.drug.capitalize()) + f": {who}"
    return text if len(text) < 140 else text[:136] + "…"


def detail(m: Match, knowledge: Knowledge) -> str:
    rec = m.recommendation
    guideline = rec.guideline
    assert guideline is not None
    strength = _STRENGTH[rec.strength]
    if m.possible:
        genes = "/".join(rec.genes)
        lines = [
            f"**The result does not settle the advice.** It stands for a range of {genes} "
            "activity scores, and the guideline advises differently within it:",
            "",
        ]
        for row in m.possible:
            when = "; ".join(c.describe() for c in row.when.values())
            lines.append(
                f"- **If {when}:** {row.recommendation} "
                f"({guideline.organization}, {_STRENGTH[row.strength]})"
            )
        lines += [
            "",
            f"**What decides:** the {genes} genotype (diplotype) or the activity score the lab "
            "reported; check the full report or order genotyping.",
            "",
            "**Patient result**",
            "",
        ]
    else:
        lines = [
            f"**Recommendation** ({guideline.organization}, {strength}): {rec.recommendation}",
            "",
            f"**Why:** {rec.implication}",
            "",
            "**Patient result**",
            "",
        ]
    for r in m.results:
        parts = [f"{r.gene}"]
        if r.diplotype:
            parts.append(f"`{_plain(r.diplotype).replace('`', '')}`")  # a star is Markdown
        if r.activity_score_text is not None:
            parts.append(f"activity score {r.activity_score_text}")
        parts.append(f"**{r.phenotype}**")
        line = "- " + ", ".join(parts)
        line += f" ({r.kind} result" + (f" of {r.date_text}" if r.date_text else "") + ")"
        lines.append(line)
        lines.extend(f"  - Note: {note}" for note in r.notes)
    ordered = _plain(m.drug.medication_text or m.drug.drug)
    lines += [
        "",
        f"**Order:** {ordered} (identified by {_plain(m.drug.matched_by)})",
        "",
        f"**Source:** {guideline.citation}, {rec.table}. PMID {guideline.pmid}. "
        f"[Guideline]({guideline.url}). Knowledge version {knowledge.version}.",
    ]
    return "\n".join(lines)


def replacement(
    order: DraftOrder, rec: Recommendation, product: AlternativeProduct
) -> dict[str, Any]:
    """Delete the draft and create one for ``product`` (``order`` has an id: see build_card)."""
    actions = [
        {
            "type": "delete",
            "description": f"Remove the draft {rec.drug} order",
            "resourceId": order.reference,
        },
        {
            "type": "create",
            "description": f"Add a draft order for {product.display}; set its dose (do not "
            f"carry over the {rec.drug} dose)",
            "resource": _new_draft(order, product),
        },
    ]
    return {
        "label": f"Replace with {product.display} (set dose)",
        "uuid": str(uuid.uuid4()),
        "actions": actions,
    }


def _new_draft(order: DraftOrder, product: AlternativeProduct) -> dict[str, Any]:
    """A minimal draft order for ``product``, valid in the FHIR version of ``order``."""
    old = order.resource
    concept = {
        "text": product.display,
        "coding": [{"system": RXNORM, "code": product.rxcui, "display": product.display}],
    }
    if order.resource_type == "MedicationOrder":  # DSTU2
        new: dict[str, Any] = {"resourceType": "MedicationOrder", "status": "draft"}
        if old.get("patient"):
            new["patient"] = old["patient"]
    else:  # STU3 / R4 MedicationRequest: these fields mean the same in both
        new = {
            "resourceType": "MedicationRequest",
            "status": "draft",
            "intent": old.get("intent") if isinstance(old.get("intent"), str) else "order",
        }
        if old.get("subject"):
            new["subject"] = old["subject"]
    new["medicationCodeableConcept"] = concept
    return new


def _plain(text: str) -> str:
    """Text from the request, made inert in Markdown that clients may render as HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")
