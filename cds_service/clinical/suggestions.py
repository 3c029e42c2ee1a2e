"""One-click suggestions: replacing a draft order with the guideline's alternative or dose.

A replacement deletes the draft order(s) the card concerns and creates a new draft in the same
FHIR version, carrying only the patient's reference from the draft and a known ``intent``.
For an opioid, an alternative is never stronger per dose than the order (CDC MME factors),
and a non-opioid option is always offered.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from ..core.wording import number
from ..fhir.hook_context import DraftOrder
from ..knowledge.loader import Knowledge
from ..knowledge.models import AlternativeProduct, Recommendation
from .medications import IdentifiedDrug
from .order_details import order_dose, strength_mg
from .recommendations import Match

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NON_OPIOID = "acetaminophen"


def replacements(m: Match, knowledge: Knowledge, orders: list[DraftOrder]) -> list[dict[str, Any]]:
    """Replacements for the order: the guideline's alternatives, keeping the non-opioid part
    of a combination product; for an opioid, never a stronger one per dose (CDC MME), and
    always a non-opioid option."""
    rec, drug = m.recommendation, m.drug
    factors = knowledge.mme.factors
    is_opioid = drug.drug in factors
    text = drug.medication_text
    keeps_non_opioid = drug.drug != NON_OPIOID and NON_OPIOID in _ingredients(drug, knowledge)
    kept = (
        [knowledge.alternative_products[NON_OPIOID]]
        if keeps_non_opioid and NON_OPIOID in knowledge.alternative_products
        else []
    )
    ordered_mme = None
    if is_opioid:
        dose = order_dose(drug.order.resource, text, drug.drug)
        per_dose = dose.mg_per_dose
        if per_dose is None:
            per_dose = strength_mg(text, drug.drug)
        if per_dose is not None:
            ordered_mme = per_dose * factors[drug.drug]
    out = []
    for alt in rec.alternatives:
        product = knowledge.alternative_products[alt]
        note = ""
        if is_opioid and alt in factors:
            alt_mme = (product.strength_mg or 0) * factors[alt]
            if ordered_mme is None or not product.strength_mg or alt_mme > ordered_mme + 1e-9:
                continue  # never suggest an opioid stronger than the order
            note = (
                f"{number(alt_mme)} MME per tablet vs {number(ordered_mme)} MME per ordered dose "
                "(CDC 2022 factors)"
            )
        out.append(replacement(drug.order, rec, [*kept, product], note, orders=orders))
    if is_opioid:
        non_opioid = kept or [knowledge.alternative_products[NON_OPIOID]]
        if not any(
            s["label"].startswith(f"Replace with {non_opioid[0].display} alone") for s in out
        ):
            out.append(
                replacement(
                    drug.order, rec, non_opioid, "a non-opioid option", alone=True, orders=orders
                )
            )
    return out


_PLAIN_PRODUCT = r"^{drug}(?: [a-z]+)? (\d+(?:\.\d+)?) MG Oral (?:Tablet|Capsule)$"


def dose_suggestion(m: Match, knowledge: Knowledge) -> dict[str, Any] | None:
    """The guideline's daily dose as a draft order: a plain product of the ordered drug whose
    strength, taken once or more a day, lands in the target range (at most its top, at least
    80% of its bottom). None when no such product is on file."""
    assert m.dose_target is not None
    low, high = m.dose_target
    pattern = re.compile(_PLAIN_PRODUCT.format(drug=re.escape(m.drug.drug)), re.IGNORECASE)
    best: tuple[float, str, str, int] | None = None
    for rxcui, name in knowledge.product_names.items():
        found = pattern.match(name)
        if not found or knowledge.products.get(rxcui) != frozenset({m.drug.drug}):
            continue
        strength = float(found.group(1))
        per_day = int(high // strength)
        total = strength * per_day
        if per_day < 1 or per_day > 4 or total < low * 0.8:
            continue
        if best is None or total > best[0]:
            best = (total, rxcui, name, per_day)
    if best is None:
        return None
    total, rxcui, name, per_day = best
    product = AlternativeProduct(rxcui=rxcui, display=name, strength_mg=total / per_day)
    draft = _new_draft(m.drug.order, product)
    times = {1: "once", 2: "twice", 3: "three times", 4: "four times"}[per_day]
    draft["dosageInstruction"] = [
        {
            "text": f"1 {name.split()[-1].lower()} {times} daily ({number(total)} mg/day, the "
            "guideline's genotype-adjusted starting dose; review before signing)",
            "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
        }
    ]
    return {
        "label": f"Replace with {name} {times} daily ({number(total)} mg/day)",
        "uuid": str(uuid.uuid4()),
        "actions": [
            {
                "type": "delete",
                "description": f"Remove the draft {m.drug.drug} order",
                "resourceId": m.drug.order.reference,
            },
            {
                "type": "create",
                "description": f"Add a draft order for {name} at the adjusted dose",
                "resource": draft,
            },
        ],
    }


def _ingredients(drug: IdentifiedDrug, knowledge: Knowledge) -> set[str]:
    code = drug.matched_by.removeprefix("RxNorm ")
    found = set(knowledge.products.get(code, frozenset()))
    text = drug.medication_text.lower()
    if NON_OPIOID in text or "apap" in text:
        found.add(NON_OPIOID)
    return found


def replacement(
    order: DraftOrder,
    rec: Recommendation,
    products: list[AlternativeProduct],
    note: str = "",
    *,
    alone: bool = False,
    orders: list[DraftOrder] | None = None,
) -> dict[str, Any]:
    """Delete the drafts (``orders``, default ``order``; each has an id: see build_card) and
    create one for each of ``products``."""
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
            "description": f"Add a draft order for {p.display}; set its dose (do not "
            f"carry over the {rec.drug} dose)",
            "resource": _new_draft(order, p),
        }
        for p in products
    ]
    names = " + ".join(p.display for p in products) + (" alone" if alone else "")
    return {
        "label": f"Replace with {names} (set dose)" + (f"; {note}" if note else ""),
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
        if patient := patient_reference(old.get("patient")):
            new["patient"] = patient
    else:  # STU3 / R4 MedicationRequest: these fields mean the same in both
        intent = old.get("intent")
        new = {
            "resourceType": "MedicationRequest",
            "status": "draft",
            "intent": intent if isinstance(intent, str) and intent in _INTENTS else "order",
        }
        if subject := patient_reference(old.get("subject")):
            new["subject"] = subject
    new["medicationCodeableConcept"] = concept
    return new


#: MedicationRequest.intent (R4; STU3's are among them).
_INTENTS = frozenset(
    {
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
_PATIENT_REFERENCE = re.compile(  # (?<!…): linear time, even searched in a long word
    r"(?:(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s\"<>]{1,200}/)?"
    r"Patient/[A-Za-z0-9\-.]{1,64}"
)


def patient_reference(value: Any) -> dict[str, str] | None:
    """The order's patient reference as a suggestion may carry it: the reference alone, and
    only a well-formed one (the rest of the order's field is not echoed)."""
    ref = value.get("reference") if isinstance(value, dict) else None
    if isinstance(ref, str) and _PATIENT_REFERENCE.fullmatch(ref):
        return {"reference": ref}
    return None
