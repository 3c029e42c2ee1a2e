"""A one-click suggestion never makes the order riskier (issue 23, "Done when"): over generated
orders (drug x product and strength x dose x frequency form x route x combination x result),
no suggestion raises the single or daily dose of any ingredient, changes the route or the
interval, drops an ingredient, or raises the opioid strength (MME) per dose.

The expectations are computed here from what was generated (the product's RxNorm ingredients
and strengths, the dose and frequency written into the order), not by the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builders import med_order
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.clinical import cards, label_rules
from cds_service.clinical.medications import identify
from cds_service.clinical.recommendations import Match
from cds_service.core.trace import Trace
from cds_service.fhir.hook_context import DraftOrder
from cds_service.genomics.gene_decision import GeneResult
from cds_service.knowledge.loader import Knowledge
from cds_service.knowledge.models import ProductForm, Recommendation
from cds_service.settings import default_knowledge_dir

KNOWLEDGE = Knowledge(default_knowledge_dir())
EPS = 1e-6

#: Rows whose cards can carry a one-click replacement: a dose change, or alternatives.
ROWS = [
    r
    for r in KNOWLEDGE.recommendations
    if (r.action == "adjust-dose" and r.id in KNOWLEDGE.dosing.dose_changes)
    or (r.action in ("avoid", "alternative") and r.alternatives)
]
#: Every product on file of each such drug, by its set of ingredients (plain and each
#: combination; every form and route; branded; with and without a dose form): a set is drawn
#: first, so common combinations (acetaminophen/codeine) are not drowned by cough syrups.
PRODUCTS: dict[str, list[list[str]]] = {}
for _drug in sorted({r.drug for r in ROWS}):
    _sets: dict[frozenset[str], list[str]] = {}
    for _rxcui, _form in sorted(KNOWLEDGE.product_forms.items()):
        if _drug in _form.names:
            _sets.setdefault(_form.names, []).append(_rxcui)
    PRODUCTS[_drug] = [sorted(v) for _, v in sorted(_sets.items(), key=lambda kv: sorted(kv[0]))]
#: The products prescribers order most: generic tablets and capsules with every strength
#: stated (drawn half of the time, so that replacements are exercised often).
SOLID = {
    drug: sorted(
        rxcui
        for group in groups
        for rxcui in group
        if KNOWLEDGE.product_forms[rxcui].form in ("Oral Tablet", "Oral Capsule")
        and not KNOWLEDGE.product_forms[rxcui].brand
        and all(i.unit == "MG" for i in KNOWLEDGE.product_forms[rxcui].ingredients)
    )
    for drug, groups in PRODUCTS.items()
}
# (words, fewest doses a day, most doses a day)
FREQUENCIES: list[tuple[str, float, float]] = [
    ("once daily", 1, 1),
    ("at bedtime", 1, 1),
    ("twice daily", 2, 2),
    ("BID", 2, 2),
    ("three times daily", 3, 3),
    ("3 times a day", 3, 3),
    ("TID", 3, 3),
    ("four times daily", 4, 4),
    ("every 4 hours", 6, 6),
    ("every 6 hours", 4, 4),
    ("q6h", 4, 4),
    ("every 8 hours", 3, 3),
    ("every 12 hours", 2, 2),
    ("q4-6h prn", 4, 6),
    ("every 4 to 6 hours as needed", 4, 6),
    ("1-2 times daily", 1, 2),
    ("every 6 hours as needed; do not exceed 4 tablets daily", 4, 4),
]
ROUTE_CODES = {"oral": "26643006", "injection": "47625008", "rectal": "37161004"}


@dataclass(frozen=True)
class Generated:
    row: Recommendation
    rxcui: str
    units: tuple[float, float] | None  # tablets per dose (a range), or None: no dose given
    in_mg: bool  # the dose written in mg rather than tablets
    frequency: tuple[float, float] | None  # doses a day, or None: not stated / contradictory
    route: str  # "same", "none", "other"
    version: str
    resource: dict[str, Any]


@st.composite
def orders(draw: st.DrawFn) -> Generated:
    row = draw(st.sampled_from(ROWS))
    if SOLID[row.drug] and draw(st.booleans()):
        rxcui = draw(st.sampled_from(SOLID[row.drug]))
    else:
        rxcui = draw(st.sampled_from(draw(st.sampled_from(PRODUCTS[row.drug]))))
    product = KNOWLEDGE.product_forms[rxcui]
    version = draw(st.sampled_from(["R4", "R4", "STU3", "DSTU2"]))
    resource = med_order((rxcui, KNOWLEDGE.product_names[rxcui]), order_id="rx-1", version=version)
    line: dict[str, Any] = {}
    dose_kind = draw(st.sampled_from(["units", "units", "units", "mg", "range", "none"]))
    units: tuple[float, float] | None = None
    in_mg = False
    strength = product.strength_mg(row.drug)
    if dose_kind == "units" or (dose_kind == "mg" and not strength):
        count = draw(st.sampled_from([0.5, 1, 1, 2, 3]))
        units = (count, count)
        _quantity(
            line, {"value": count, "unit": draw(st.sampled_from(["tablet", "{pill}"]))}, version
        )
    elif dose_kind == "mg":
        count = draw(st.sampled_from([1, 2]))
        units, in_mg = (count, count), True
        _quantity(line, {"value": count * (strength or 0), "unit": "mg"}, version)
    elif dose_kind == "range":
        units = (1, 2)
        line["text"] = "1-2 tablets"
    frequency_kind = draw(
        st.sampled_from(["words", "words", "words", "structured", "both", "clash", "none"])
    )
    frequency: tuple[float, float] | None = None
    words, low, high = draw(st.sampled_from(FREQUENCIES))
    if frequency_kind in ("words", "both"):
        line["text"] = (line.get("text", "take") + " " + words).strip()
        frequency = (low, high)
    if frequency_kind in ("structured", "both"):
        line.setdefault("timing", {})["repeat"] = _repeat(low, high)
        frequency = (low, high)
    if frequency_kind == "clash":
        other = draw(st.sampled_from([f for f in FREQUENCIES if (f[1], f[2]) != (low, high)]))
        line["text"] = (line.get("text", "take") + " " + words).strip()
        line.setdefault("timing", {})["repeat"] = _repeat(other[1], other[2])
    route = draw(st.sampled_from(["none", "same", "other"]))
    if route != "none":
        mine = product.route or "oral"
        wanted = mine if route == "same" else ("injection" if mine != "injection" else "oral")
        if wanted not in ROUTE_CODES:
            route = "none"
        else:
            line["route"] = {
                "coding": [{"system": "http://snomed.info/sct", "code": ROUTE_CODES[wanted]}]
            }
    if line:
        resource["dosageInstruction"] = [line]
    else:
        resource.pop("dosageInstruction", None)
    return Generated(row, rxcui, units, in_mg, frequency, route, version, resource)


def _quantity(line: dict[str, Any], quantity: dict[str, Any], version: str) -> None:
    if version == "R4":
        line["doseAndRate"] = [{"doseQuantity": quantity}]
    else:
        line["doseQuantity"] = quantity


def _repeat(low: float, high: float) -> dict[str, Any]:
    """A Timing.repeat for ``low``-``high`` doses a day (as an interval in hours)."""
    if low == high:
        return {"frequency": 1, "period": 24 / low, "periodUnit": "h"}
    return {"frequency": 1, "period": 24 / high, "periodMax": 24 / low, "periodUnit": "h"}


def _results(row: Recommendation) -> tuple[GeneResult, ...]:
    return tuple(
        GeneResult(
            gene=gene,
            phenotype=cond.phenotype or "Intermediate Metabolizer",
            observation="Observation/x",
            kind="genotype",
            activity_score=cond.activity_score_min,
        )
        for gene, cond in row.when.items()
    )


def _per_day(repeat: dict[str, Any]) -> tuple[float, float]:
    """Doses a day of a Timing.repeat the service wrote (computed here, independently)."""
    days = {"h": 1 / 24, "d": 1.0, "wk": 7.0}[repeat["periodUnit"]]
    frequency, most = repeat["frequency"], repeat.get("frequencyMax", repeat["frequency"])
    period, longest = repeat["period"], repeat.get("periodMax", repeat["period"])
    return frequency / (longest * days), most / (period * days)


def _mg(form: ProductForm) -> dict[str, float]:
    return {i.name: i.strength for i in form.ingredients if i.unit == "MG" and i.strength}


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(orders())
def test_no_suggestion_makes_the_order_riskier(generated: Generated) -> None:
    row = generated.row
    draft = DraftOrder(generated.resource)
    identified, _ = identify(draft, KNOWLEDGE)
    drugs = [d for d in identified if d.drug == row.drug]
    if not drugs:
        return  # the product is not identified as this drug (nothing to judge)
    match = label_rules.with_dose(Match(drugs[0], row, _results(row)), KNOWLEDGE, Trace())
    built = [c.body for c in cards.build_cards([match], KNOWLEDGE)]
    ordered = KNOWLEDGE.product_forms[generated.rxcui]
    for card in built:
        for suggestion in card.get("suggestions", []):
            check(suggestion, generated, ordered, match)


def check(
    suggestion: dict[str, Any], generated: Generated, ordered: ProductForm, match: Match
) -> None:
    drug = generated.row.drug
    label = suggestion["label"]
    kinds = [a["type"] for a in suggestion["actions"]]
    # creates first (the public sandbox acts on the first usable action), then the delete
    assert kinds == sorted(kinds) and kinds[-1] == "delete" and "create" in kinds, label
    assert all(
        a["resourceId"] == f"{generated.resource['resourceType']}/rx-1"
        for a in suggestion["actions"]
        if a["type"] == "delete"
    )
    # a suggestion needs the order's route: stated, and not contradicted
    assert ordered.route is not None and generated.route != "other", (label, generated)
    assert not match.within_target, label
    created: list[ProductForm] = []
    for action in suggestion["actions"]:
        if action["type"] != "create":
            continue
        resource = action["resource"]
        assert resource["resourceType"] == generated.resource["resourceType"]
        code = resource["medicationCodeableConcept"]["coding"][0]["code"]
        form = KNOWLEDGE.product_forms[code]
        created.append(form)
        # the same route
        assert form.route == ordered.route, (label, form.route, ordered.route)
        dosage = resource.get("dosageInstruction")
        if not dosage:
            assert "(set dose)" in label, label  # a dose is set by the prescriber
            assert drug not in form.names, label  # never the avoided drug again
            continue
        check_dose(dosage[0], form, generated, ordered, label)
    names = frozenset().union(*(f.names for f in created))
    # no ingredient dropped but the one the guideline replaces
    assert ordered.names - {drug} <= names, (label, ordered.names, names)
    check_opioid_strength(created, generated, ordered, label)


def check_dose(
    dosage: dict[str, Any],
    form: ProductForm,
    generated: Generated,
    ordered: ProductForm,
    label: str,
) -> None:
    """The same ingredients; no ingredient's single or daily dose above the order's; the same
    interval; the other ingredients at the same dose."""
    assert form.names == ordered.names, label
    assert generated.units is not None and generated.units[0] == generated.units[1], label
    assert generated.frequency is not None, label
    quantity = dosage.get("doseQuantity") or dosage["doseAndRate"][0]["doseQuantity"]
    units = quantity["value"]
    low, high = _per_day(dosage["timing"]["repeat"])
    ordered_low, ordered_high = generated.frequency
    # the interval is kept
    assert abs(low - ordered_low) < EPS and abs(high - ordered_high) < EPS, label
    new_mg, old_mg = _mg(form), _mg(ordered)
    old_units = generated.units[0]
    for name, strength in new_mg.items():
        single, old_single = units * strength, old_units * old_mg[name]
        assert single <= old_single + EPS, (label, name, single, old_single)
        assert single * high <= old_single * ordered_high + EPS, label
        if name != generated.row.drug:
            assert abs(single - old_single) < EPS, (label, name)  # kept as it was


def check_opioid_strength(
    created: list[ProductForm], generated: Generated, ordered: ProductForm, label: str
) -> None:
    """An opioid offered for an opioid is no stronger per dose (MME) than the order."""
    drug = generated.row.drug
    for form in created:
        for opioid in form.names - {drug}:
            if KNOWLEDGE.drugs.get(opioid) is None:
                continue
            if KNOWLEDGE.drugs[opioid].drug_class != "opioid" or opioid in ordered.names:
                continue
            ordered_factor = KNOWLEDGE.mme.oral_mg(drug)
            factor = KNOWLEDGE.mme.oral_mg(opioid)
            assert ordered_factor is not None and factor is not None, label
            strength = _mg(ordered).get(drug)
            assert strength is not None, label
            per_dose = (generated.units[0] if generated.units else 1) * strength
            new = _mg(form)[opioid] * factor
            assert new <= per_dose * ordered_factor + EPS, (label, new, per_dose)


def test_the_generator_reaches_every_kind_of_suggestion() -> None:
    """The property is not vacuous: over a fixed sample, dose replacements, alternatives,
    kept combination ingredients and opioid replacements all occur."""
    seen: set[str] = set()

    @settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @given(orders())
    def collect(generated: Generated) -> None:
        draft = DraftOrder(generated.resource)
        identified, _ = identify(draft, KNOWLEDGE)
        drugs = [d for d in identified if d.drug == generated.row.drug]
        if not drugs:
            return
        match = label_rules.with_dose(
            Match(drugs[0], generated.row, _results(generated.row)), KNOWLEDGE, Trace()
        )
        for card in (c.body for c in cards.build_cards([match], KNOWLEDGE)):
            for s in card.get("suggestions", []):
                label = s["label"]
                seen.add("dose" if "(set dose)" not in label else "alternative")
                if " + " in label or ("alone" in label and "/" in label):
                    seen.add("kept ingredients")
                if "MME per tablet" in label:
                    seen.add("opioid")

    collect()
    assert {"dose", "alternative", "kept ingredients", "opioid"} <= seen, seen
