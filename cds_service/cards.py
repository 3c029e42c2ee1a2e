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

from .genomic_facts import GeneResult
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


def build_cards(matches: list[Match], knowledge: Knowledge) -> list[dict[str, Any]]:
    """One card per drug–gene–advice (recommendation row), however many orders it concerns:
    the card lists them (50,000 codeine orders must not make 50,000 cards)."""
    groups: dict[str, list[Match]] = {}
    for m in matches:
        if indicator(m.recommendation) is not None:
            groups.setdefault(m.recommendation.id, []).append(m)
    cards = []
    for group in groups.values():
        first = group[0]
        orders: list[DraftOrder] = []
        seen: set[str | int] = set()
        for m in group:
            key = m.drug.order.reference or id(m.drug.order)
            if key not in seen:
                seen.add(key)
                orders.append(m.drug.order)
        level = indicator(first.recommendation)
        assert level is not None
        cards.append(build_card(first, level, knowledge, orders=orders))
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(cards, key=lambda c: order[c["indicator"]])


def build_card(
    m: Match, level: str, knowledge: Knowledge, orders: list[DraftOrder] | None = None
) -> dict[str, Any]:
    """The card for ``m``; ``orders`` (default: ``m``'s own) are all the orders it concerns."""
    orders = orders or [m.drug.order]
    rec = m.recommendation
    guideline = rec.guideline
    assert guideline is not None
    genes = "/".join(rec.genes)
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary(rec, m.results),
        "indicator": level,
        "detail": detail(m, knowledge, orders),
        "source": {
            "label": f"{guideline.organization} {guideline.year}: {rec.drug} and "
            f"{genes} ({SOURCE_LABEL})",
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
        replacement(m.drug.order, rec, knowledge.alternative_products[alt], orders)
        for alt in rec.alternatives
        # Replace only orders we can name: a create without a delete would leave both.
        if rec.action in ("avoid", "alternative")
        and all(o.is_medication_order and o.reference for o in orders)
    ]
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    return card


def summary(rec: Recommendation, results: tuple[GeneResult, ...]) -> str:
    who = " and ".join(f"{r.gene} {r.phenotype.lower()}" for r in results)
    verb = {
        "avoid": "Avoid {drug}",
        "alternative": "Consider an alternative to {drug}",
        "adjust-dose": "Adjust {drug} dose",
        "caution": "{Drug}: reduced or uncertain response possible",
    }[rec.action]
    text = verb.format(drug=rec.drug, Drug=rec.drug.capitalize()) + f": {who}"
    return text if len(text) < 140 else text[:136] + "…"


def detail(m: Match, knowledge: Knowledge, orders: list[DraftOrder] | None = None) -> str:
    rec = m.recommendation
    guideline = rec.guideline
    assert guideline is not None
    strength = _STRENGTH[rec.strength]
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
    ]
    if orders and len(orders) > 1:
        named = ", ".join(_plain(o.reference or "an order without id") for o in orders)
        lines += [f"**Applies to {len(orders)} draft orders:** {named}", ""]
    lines += [
        f"**Source:** {guideline.citation}, {rec.table}. PMID {guideline.pmid}. "
        f"[Guideline]({guideline.url}). Knowledge version {knowledge.version}.",
    ]
    return "\n".join(lines)


def replacement(
    order: DraftOrder,
    rec: Recommendation,
    product: AlternativeProduct,
    orders: list[DraftOrder] | None = None,
) -> dict[str, Any]:
    """Delete the drafts (``orders``, default ``order``; each has an id: see build_card) and
    create one for ``product``."""
    actions: list[dict[str, Any]] = [
        {
            "type": "delete",
            "description": f"Remove the draft {rec.drug} order",
            "resourceId": o.reference,
        }
        for o in (orders or [order])
    ]
    actions += [
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
