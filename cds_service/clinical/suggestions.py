"""One-click suggestions: replacing a draft order with the guideline's alternative or dose.

A suggestion never makes the order riskier (``docs/clinical-rules.md``, "One-click
suggestions"):

* **Dose** (``dose_suggestion``): the same ingredients (every other ingredient of a
  combination at the same strength and count), the same route and dose form family, the same
  interval, whole tablets or capsules; the guideline's figure for the result (its percentage
  of the ordered dose, or its range) rounded down to what the products allow; never a higher
  single or daily dose than the order's. When no product and regimen do all that, or the
  order's dose, frequency or route is not read with certainty, no one-click dose: the card
  gives the target in words and says why.
* **Alternative** (``replacements``): the guideline's alternatives by the order's route,
  keeping every other ingredient of a combination (a product with exactly those, by the same
  route) or none at all; for an opioid, never a stronger one per dose (MME factors of
  ``rules/mme.json``; an opioid without a factor gets no opioid replacement), and always a
  non-opioid option. These drafts carry no dose: doses of different drugs are not
  interchangeable, the prescriber sets it ("set dose").

Every replacement lists its ``create`` actions before the ``delete`` of the draft(s) it
replaces: the spec applies a suggestion's actions together, and the public CDS Hooks sandbox
acts on the first usable action only (a ``delete`` first would empty the order). The new
draft is in the same FHIR version, carrying only the patient's reference from the draft and a
known ``intent``.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache, partial
from typing import Any

from ..core.ids import uuid4 as new_uuid
from ..core.wording import number, with_article
from ..fhir.hook_context import DraftOrder
from ..fhir.values import as_dict, as_str, objects
from ..knowledge.loader import Knowledge
from ..knowledge.models import AlternativeProduct, ProductForm, Recommendation
from .frequency import Frequency
from .medications import RXNORM_SYSTEMS, IdentifiedDrug, medication_text
from .order_details import OrderDose, drug_dose, order_dose, order_route, product_form
from .recommendations import Match

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
NON_OPIOID = "acetaminophen"

#: Dose forms counted in whole units: a one-click dose gives a number of them.
COUNTABLE = {
    "Oral Tablet": "tablet",
    "Oral Capsule": "capsule",
    "Chewable Tablet": "tablet",
    "Disintegrating Oral Tablet": "tablet",
    "Effervescent Oral Tablet": "tablet",
    "Extended Release Oral Tablet": "tablet",
    "Extended Release Oral Capsule": "capsule",
    "Delayed Release Oral Tablet": "tablet",
    "Delayed Release Oral Capsule": "capsule",
    "Sublingual Tablet": "tablet",
    "Buccal Tablet": "tablet",
    "Rectal Suppository": "suppository",
}
#: Dose forms a replacement may swap for one another (same route, release and handling).
_FAMILY = {"Oral Tablet": "oral", "Oral Capsule": "oral"}
_ROUTE_CODES = {
    "oral": ("26643006", "Oral route"),
    "rectal": ("37161004", "Rectal route"),
    "sublingual": ("37839007", "Sublingual route"),
    "buccal": ("54471007", "Buccal route"),
}
#: The most tablets or capsules a one-click dose asks for at a time.
MAX_UNITS = 4


# -- dose ----------------------------------------------------------------------------------


def dose_suggestion(m: Match, knowledge: Knowledge) -> tuple[dict[str, Any] | None, str]:
    """The guideline's dose as a replacement draft, or None and why there is none."""
    assert m.dose_target is not None
    drug = m.drug
    if knowledge.dosing.dose_changes[m.recommendation.id].basis == "maintenance":
        return None, (
            "the guideline lowers the maintenance dose and leaves the first (loading) dose "
            "unchanged, and the order may be either"
        )
    product = product_form(drug, knowledge)
    if product is None or product.form is None:
        return None, "the ordered product's ingredients and dose form are not on file"
    unit = COUNTABLE.get(product.form)
    if unit is None:
        return None, (
            f"the order is {with_article(product.form.lower())}; a one-click dose keeps whole "
            "tablets, capsules or suppositories"
        )
    if order_route(drug.order.resource, product) != product.route:
        return None, "the order's route is not stated clearly (its product and its words differ)"
    dose = drug_dose(drug, knowledge)
    frequency = dose.frequency
    if (
        frequency is None
        or dose.mg_per_dose is None
        or dose.units_per_dose is None
        or dose.max_mg_per_day is None
    ):
        why = dose.problem or "dose or frequency not stated"
        return None, f"the ordered dose and frequency are not read with certainty ({why})"
    change = knowledge.dosing.dose_changes[m.recommendation.id]
    low, high = m.dose_target
    single_figure = abs(high - low) < 1e-9
    if change.basis == "ordered":  # a share of each ordered dose, the same interval
        top = dose.mg_per_dose * change.high
        floor = top * 0.5 if single_figure else dose.mg_per_dose * change.low
        measure = "single"
    else:  # an absolute daily range: at the most frequent the order allows
        top, floor = high, (high * 0.5 if single_figure else low)
        measure = "daily"
    best: tuple[tuple[Any, ...], str, ProductForm, float] | None = None
    for rxcui, candidate in _same_kind(product, drug.drug, knowledge):
        strength = candidate.strength_mg(drug.drug)
        if not strength:
            continue
        counts = [dose.units_per_dose] if len(product.ingredients) > 1 else range(1, MAX_UNITS + 1)
        for units in counts:
            single = strength * units
            daily_most = single * frequency.high
            value = single if measure == "single" else daily_most
            if (
                single > dose.mg_per_dose + 1e-9
                or daily_most > dose.max_mg_per_day + 1e-9
                or value > top + 1e-9
                or value < floor - 1e-9
            ):
                continue
            same_form = candidate.form != product.form
            key = (
                (-single, units, same_form, int(rxcui))
                if single_figure
                else (units, -single, same_form, int(rxcui))
            )
            if best is None or key < best[0]:
                best = (key, rxcui, candidate, units)
    if best is None:
        target = (
            f"{number(low)} mg/day" if single_figure else f"{number(low)}–{number(high)} mg/day"
        )
        others = [i for i in product.ingredients if i.name != drug.drug]
        if others:
            kept = _and([f"{i.name} {number(i.strength or 0)} mg" for i in others])
            return None, (
                f"no {product.route} product on file lowers the {drug.drug} to about {target} "
                f"{frequency.words} and keeps the {kept} of each {unit}"
            )
        return None, (
            f"no {product.route} product on file gives about {target} {frequency.words} in "
            f"whole {unit}s without a higher single or daily dose"
        )
    _, rxcui, chosen, units = best
    return _dose_replacement(m, knowledge, dose, frequency, rxcui, chosen, units), ""


def _dose_replacement(
    m: Match,
    knowledge: Knowledge,
    dose: OrderDose,
    frequency: Frequency,
    rxcui: str,
    chosen: ProductForm,
    units: float,
) -> dict[str, Any]:
    drug = m.drug
    name = knowledge.product_names[rxcui]
    unit = COUNTABLE[chosen.form or ""]
    strength = chosen.strength_mg(drug.drug) or 0
    single = strength * units
    low_day, high_day = single * frequency.low, single * frequency.high
    daily = (
        f"{number(low_day)} mg/day"
        if abs(high_day - low_day) < 1e-9
        else f"{number(low_day)}–{number(high_day)} mg/day"
    )
    count = f"{number(units)} {unit}{'s' if units != 1 else ''}"
    when = frequency.words + (", as needed" if dose.as_needed else "")
    guideline = m.recommendation.guideline
    who = guideline.organization if guideline else "the guideline"
    dosage: dict[str, Any] = {
        "text": f"{count} {when} ({number(single)} mg per dose, {daily}: {who}'s "
        "genotype-adjusted dose; review before signing)",
        "timing": {"repeat": frequency.as_repeat()},
    }
    quantity = {"value": units, "unit": unit, "system": UCUM, "code": f"{{{unit}}}"}
    if _r4_dosage(drug.order):
        dosage["doseAndRate"] = [{"doseQuantity": quantity}]
    else:
        dosage["doseQuantity"] = quantity
    if dose.as_needed:
        dosage["asNeededBoolean"] = True
    if chosen.route in _ROUTE_CODES:
        code, display = _ROUTE_CODES[chosen.route]
        dosage["route"] = {"coding": [{"system": SNOMED, "code": code, "display": display}]}
    product = AlternativeProduct(rxcui=rxcui, display=name, strength_mg=strength)
    draft = _new_draft(drug.order, product)
    draft["dosageInstruction"] = [dosage]
    low, high = m.dose_target or (0.0, 0.0)
    target = number(low) if abs(high - low) < 1e-9 else f"{number(low)}–{number(high)}"
    return {
        "label": f"Replace with {name}: {count} {when} ({daily}; {who}: about {target} mg/day)",
        "uuid": new_uuid(),
        "actions": [
            {
                "type": "create",
                "description": f"Add a draft order for {name} at the adjusted dose",
                "resource": draft,
            },
            {
                "type": "delete",
                "description": f"Remove the draft {drug.drug} order",
                "resourceId": drug.order.reference,
            },
        ],
    }


def _r4_dosage(order: DraftOrder) -> bool:
    """Does the order write its dose the R4 way (``doseAndRate``)? A replacement mirrors it;
    STU3 and DSTU2 put ``doseQuantity`` on the dosage itself."""
    if order.resource_type == "MedicationOrder":
        return False
    lines = objects(order.resource.get("dosageInstruction"))
    return not any("doseQuantity" in d for d in lines) or any("doseAndRate" in d for d in lines)


@lru_cache(maxsize=8)
def _by_ingredients(knowledge: Knowledge) -> dict[frozenset[str], list[tuple[str, ProductForm]]]:
    """Generic products with a dose form, by their set of ingredients (built once)."""
    out: dict[frozenset[str], list[tuple[str, ProductForm]]] = {}
    for rxcui, form in knowledge.product_forms.items():
        if form.form and form.route and not form.brand:
            out.setdefault(form.names, []).append((rxcui, form))
    return out


def _family(form: ProductForm) -> tuple[Any, ...]:
    return (form.route, _FAMILY.get(form.form or "", form.form), form.prefix, form.abuse_deterrent)


def _same_kind(
    product: ProductForm, drug: str, knowledge: Knowledge
) -> list[tuple[str, ProductForm]]:
    """Products that differ from ``product`` at most in the strength of ``drug``: the same
    ingredients (as the same salts), the other ingredients at the same strength, the same
    route and dose form family."""
    wanted = {i.name: i for i in product.ingredients}
    out = []
    for rxcui, candidate in _by_ingredients(knowledge).get(product.names, []):
        if _family(candidate) != _family(product):
            continue
        if all(
            i.substance == wanted[i.name].substance
            and (
                i.name == drug
                or (i.strength, i.unit) == (wanted[i.name].strength, wanted[i.name].unit)
            )
            for i in candidate.ingredients
        ):
            out.append((rxcui, candidate))
    return out


# -- alternatives --------------------------------------------------------------------------


def replacements(
    m: Match, knowledge: Knowledge, orders: list[DraftOrder]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Replacements by the guideline's alternatives (see the module's notes), and what the
    card should say about those not offered."""
    rec, drug = m.recommendation, m.drug
    found = [_kind(order, knowledge, drug.drug) for order in orders]
    problems = [k for k in found if isinstance(k, str)]
    if problems:
        return [], [f"No one-click replacement: {problems[0]}; replace it by hand."]
    kinds = [k for k in found if not isinstance(k, str)]
    product, route = kinds[0]
    if any((p.names, r) != (product.names, route) for p, r in kinds[1:]):
        return [], [
            "No one-click replacement: the card concerns orders of different products or "
            "routes; replace each by hand."
        ]
    others = sorted(product.names - {drug.drug})
    kept: list[AlternativeProduct] = []
    if others:
        keeping = _keeping(frozenset(others), product, route, knowledge)
        named = _and(others)
        if keeping is None:
            return [], [
                f"No one-click replacement: the order also contains {named}, and no {route} "
                f"product on file has {'it' if len(others) == 1 else 'them'} without "
                f"{drug.drug}; replace it by hand, keeping {named}."
            ]
        kept = [keeping]
    notes: list[str] = []
    is_opioid = _is_opioid(drug.drug, knowledge)
    ordered_mme = _ordered_mme(drug, orders, knowledge) if is_opioid else None
    out = []
    for alt in rec.alternatives:
        option = knowledge.alternative_products[alt]
        option_form = knowledge.product_forms.get(option.rxcui)
        if option_form is None or option_form.route != route:
            notes.append(
                f"{option.display} is not offered: the order is {_route_words(route)} and "
                f"{option.display} is not"
            )
            continue
        note = ""
        if is_opioid or _is_opioid(alt, knowledge):
            # worked out once per question: the same few products and doses return
            question = (drug.drug, alt, option.rxcui, option.strength_mg, ordered_mme)
            why, note = knowledge.remembered("no stronger").get(
                question, partial(_no_stronger, drug.drug, alt, option, ordered_mme, knowledge)
            )
            if why:
                notes.append(f"{option.display} is not offered: {why}")
                continue
        out.append(replacement(drug.order, rec, [*kept, option], note, orders=orders))
    if is_opioid:
        non_opioid = kept or (
            [knowledge.alternative_products[NON_OPIOID]]
            if route == "oral" and NON_OPIOID in knowledge.alternative_products
            else []
        )
        if non_opioid:
            out.append(
                replacement(
                    drug.order, rec, non_opioid, "a non-opioid option", alone=True, orders=orders
                )
            )
    return out, notes


def _kind(order: DraftOrder, knowledge: Knowledge, drug: str) -> tuple[ProductForm, str] | str:
    """The order's product and route, or why a one-click replacement cannot know them."""
    product = _coded_product(order, knowledge)
    if product is None or drug not in product.names:
        return (
            "the order's product is not coded with an RxNorm product whose ingredients and dose "
            "form are on file"
        )
    if product.form is None:
        return "the order's code names the drug without a dose form, so its route is not known"
    route = order_route(order.resource, product)
    if route is None:
        return "the order's route is not stated clearly (its product and its words differ)"
    return product, route


def _coded_product(order: DraftOrder, knowledge: Knowledge) -> ProductForm | None:
    """The order's product, by the first of its RxNorm codes whose form is on file."""
    for coding in objects(as_dict(order.medication).get("coding")):
        if as_str(coding.get("system")) in RXNORM_SYSTEMS:
            found = knowledge.product_forms.get(str(coding.get("code", "")))
            if found is not None:
                return found
    return None


def _keeping(
    others: frozenset[str], product: ProductForm, route: str, knowledge: Knowledge
) -> AlternativeProduct | None:
    """A product of exactly the order's other ingredients by its route: the same dose form
    family first, then the closest strengths (a lower one preferred when about as close).
    Worked out once per product (products come from the knowledge: a bounded number)."""
    key = (
        others,
        route,
        _family(product),
        product.form,
        tuple((i.name, i.strength, i.unit) for i in product.ingredients),
    )
    kept: AlternativeProduct | None = knowledge.remembered("product keeping").get(
        key, lambda: _closest_keeping(others, product, route, knowledge)
    )
    return kept


def _closest_keeping(
    others: frozenset[str], product: ProductForm, route: str, knowledge: Knowledge
) -> AlternativeProduct | None:
    ordered = {i.name: i.strength for i in product.ingredients if i.unit == "MG"}
    best: tuple[tuple[Any, ...], str] | None = None
    for rxcui, candidate in _by_ingredients(knowledge).get(others, []):
        if candidate.route != route:
            continue
        above, distance = False, 0.0
        for i in candidate.ingredients:
            mine = ordered.get(i.name)
            if i.unit == "MG" and i.strength and mine:
                above = above or i.strength > mine + 1e-9
                distance += abs(math.log(i.strength / mine))
            elif mine:
                distance += 10.0  # a liquid for a tablet: far
        key = (
            _family(candidate) != _family(product),
            round(distance + (0.1 if above else 0.0), 6),  # the closest; at a tie, the lower
            candidate.form != product.form,
            int(rxcui),
        )
        if best is None or key < best[0]:
            best = (key, rxcui)
    if best is None:
        return None
    rxcui = best[1]
    return AlternativeProduct(rxcui=rxcui, display=knowledge.product_names[rxcui])


def _is_opioid(drug: str, knowledge: Knowledge) -> bool:
    entry = knowledge.drugs.get(drug)
    return entry is not None and entry.drug_class == "opioid"


def _ordered_mme(
    drug: IdentifiedDrug, orders: list[DraftOrder], knowledge: Knowledge
) -> float | None:
    """The least MME one ordered dose may hold, over the card's orders (None: not known)."""
    factor = knowledge.mme.oral_mg(drug.drug)
    if factor is None:
        return None
    values = []
    for order in orders:
        product = _coded_product(order, knowledge)
        strength = product.strength_mg(drug.drug) if product else None
        dose = order_dose(
            order.resource,
            medication_text(order),
            drug.drug,
            strength=strength,
            combination=product is not None and len(product.ingredients) > 1,
        )
        # one dose as read (a range's lower end), else one tablet of the product
        per_dose = dose.mg_range[0] if dose.mg_range else dose.mg_per_dose
        per_dose = per_dose if per_dose is not None else strength
        if per_dose is None:
            return None
        values.append(per_dose * factor)
    return min(values) if values else None


def _no_stronger(
    ordered: str,
    alt: str,
    option: AlternativeProduct,
    ordered_mme: float | None,
    knowledge: Knowledge,
) -> tuple[str, str]:
    """('', note) when an opioid replacement is no stronger per dose than the order, else
    (why not, '')."""
    mme = knowledge.mme
    if not _is_opioid(alt, knowledge):
        return "", ""
    if mme.oral_mg(ordered) is None:
        return f"{ordered} has no oral MME factor on file, so no opioid is offered for it", ""
    factor = mme.oral_mg(alt)
    if factor is None or not option.strength_mg:
        return f"{alt} has no oral MME factor on file", ""
    if ordered_mme is None:
        return "the ordered dose is not known, so its strength cannot be compared", ""
    alt_mme = option.strength_mg * factor
    if alt_mme > ordered_mme + 1e-9:
        return (
            f"{number(alt_mme)} MME per tablet, stronger than the ordered dose "
            f"({number(ordered_mme)} MME; {_sources(ordered, alt, knowledge)})",
            "",
        )
    return "", (
        f"{number(alt_mme)} MME per tablet vs {number(ordered_mme)} MME per ordered dose "
        f"({_sources(ordered, alt, knowledge)})"
    )


def _sources(a: str, b: str, knowledge: Knowledge) -> str:
    cited = sorted({knowledge.mme.cited(a), knowledge.mme.cited(b)})
    return " and ".join(cited) + " factors"


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _route_words(route: str) -> str:
    return {"injection": "an injection", "oral": "oral"}.get(route, route)


def replacement(
    order: DraftOrder,
    rec: Recommendation,
    products: list[AlternativeProduct],
    note: str = "",
    *,
    alone: bool = False,
    orders: list[DraftOrder] | None = None,
) -> dict[str, Any]:
    """Create a draft for each of ``products``, then delete the drafts (``orders``, default
    ``order``; each has an id: see build_card). Creates first: see the module's notes."""
    actions: list[dict[str, Any]] = [
        {
            "type": "create",
            "description": f"Add a draft order for {p.display}; set its dose (do not "
            f"carry over the {rec.drug} dose)",
            "resource": _new_draft(order, p),
        }
        for p in products
    ]
    actions += [
        {
            "type": "delete",
            "description": f"Remove the draft {rec.drug} order",
            "resourceId": o.reference,
        }
        for o in (orders or [order])
    ]
    names = " + ".join(p.display for p in products) + (" alone" if alone else "")
    return {
        "label": f"Replace with {names} (set dose)" + (f"; {note}" if note else ""),
        "uuid": new_uuid(),
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
