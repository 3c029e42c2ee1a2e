"""One-click suggestions are safe to click (issue 23): the orders of the issue, each with the
card and the suggestion (or the reason there is none) a prescriber should see."""

from __future__ import annotations

from typing import Any

import pytest
from builders import genotype_obs, hook_request, med_order, with_results
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CYP2C9_PM = genotype_obs("*3/*3", gene="CYP2C9")
CYP2D6_IM = genotype_obs("*1/*4")  # activity score 1
CYP2D6_PM = genotype_obs("*4/*4")
CYP2D6_UM = genotype_obs("*1/*1x2")
ORAL, INTRAVENOUS = "26643006", "47625008"


def order(
    product: tuple[str, str],
    text: str | None = None,
    *,
    tablets: float | None = None,
    repeat: dict[str, Any] | None = None,
    route: str | None = None,
    version: str = "R4",
) -> dict[str, Any]:
    """A draft order of ``product`` with one dosage line as a prescriber writes it."""
    resource = med_order(product, order_id="rx-1", version=version)
    line: dict[str, Any] = {}
    if text:
        line["text"] = text
    if tablets is not None:
        quantity = {"value": tablets, "unit": "tablet"}
        if version == "R4":
            line["doseAndRate"] = [{"doseQuantity": quantity}]
        else:
            line["doseQuantity"] = quantity
    if repeat:
        line["timing"] = {"repeat": repeat}
    if route:
        line["route"] = {"coding": [{"system": "http://snomed.info/sct", "code": route}]}
    resource["dosageInstruction"] = [line]
    return resource


def card_for(call, draft: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    status, answer = call(hook_request("order-select", [draft], prefetch=with_results(result)))
    assert status == 200
    [card] = answer["cards"]
    return card


def labels(card: dict[str, Any]) -> list[str]:
    return [s["label"] for s in card.get("suggestions", [])]


def one_click_note(card: dict[str, Any]) -> str:
    detail = card["detail"]
    return detail[detail.index("**One-click suggestions:**") :]


IBUPROFEN_400 = ("197805", "Ibuprofen 400 MG Oral Tablet")
IBUPROFEN_800 = ("197807", "Ibuprofen 800 MG Oral Tablet")
CALDOLOR = ("854183", "8 ML Ibuprofen 100 MG/ML Injection")
MELOXICAM_INJECTION = ("1086707", "meloxicam 5 MG/ML Injectable Solution")
CELECOXIB_50 = ("686379", "celecoxib 50 MG Oral Capsule")
CELECOXIB_100 = ("205322", "celecoxib 100 MG Oral Capsule")
HYDROCODONE_IBUPROFEN = ("858798", "hydrocodone bitartrate 7.5 MG / ibuprofen 200 MG Oral Tablet")
FAMOTIDINE_IBUPROFEN = ("1100066", "Famotidine 26.6 MG / Ibuprofen 800 MG Oral Tablet")
AMITRIPTYLINE_PERPHENAZINE = (
    "856797",
    "Amitriptyline Hydrochloride 25 MG / Perphenazine 2 MG Oral Tablet",
)
AMITRIPTYLINE_25 = ("856834", "Amitriptyline Hydrochloride 25 MG Oral Tablet")
NORTRIPTYLINE_25 = ("317136", "Nortriptyline 25 MG Oral Capsule")
NORTRIPTYLINE_50 = ("198046", "Nortriptyline 50 MG Oral Capsule")
DIHYDROCODEINE = (
    "1234871",
    "acetaminophen 356.4 MG / caffeine 30 MG / dihydrocodeine bitartrate 16 MG Oral Capsule",
)
FIORICET_CODEINE = (
    "993943",
    "acetaminophen 325 MG / butalbital 50 MG / caffeine 40 MG / codeine phosphate 30 MG Oral "
    "Capsule",
)
TRAMADOL = ("835603", "tramadol hydrochloride 50 MG Oral Tablet")


# -- 1. the frequency as prescribers write it -------------------------------------------------


@pytest.mark.parametrize("product", [AMITRIPTYLINE_25, NORTRIPTYLINE_25])
def test_three_times_daily_is_three_doses_a_day_not_a_low_dose(call, product):
    """25 mg three times daily is 75 mg/day: CPIC's critical 'avoid' for a poor metabolizer,
    not the info card for a low (pain) dose ('daily' is not once a day here)."""
    card = card_for(
        call, order(product, "Take 1 tablet (25 mg) by mouth three times daily"), CYP2D6_PM
    )
    assert card["indicator"] == "critical" and card["summary"].startswith("Avoid")
    assert "25 mg per dose, 75 mg/day (3 times a day)" in card["detail"]


def test_a_maximum_per_day_clause_is_not_read_as_once_a_day(call):
    """'Every 6 hours as needed; do not exceed 4 tablets daily': 4 doses a day, at most 4
    tablets; 100 mg/day of amitriptyline is not a low dose."""
    text = "Take 1 tablet by mouth every 6 hours as needed; do not exceed 4 tablets daily"
    card = card_for(call, order(AMITRIPTYLINE_25, text), CYP2D6_PM)
    assert card["indicator"] == "critical"
    assert "100 mg/day (every 6 hours, as needed)" in card["detail"]


@pytest.mark.parametrize(
    ("text", "repeat"),
    [
        ("1 tablet twice daily", {"frequency": 1, "period": 1, "periodUnit": "d"}),
        ("1 tablet twice daily at bedtime", None),
        ("25 mg a day in divided doses", None),
        ("as directed", None),
    ],
)
def test_readings_that_disagree_or_say_nothing_leave_the_dose_unknown(call, text, repeat):
    """Never the lower reading: the daily dose is unknown, so no low-dose caution (the
    guideline's full advice), and the card says the dose is not stated clearly."""
    card = card_for(call, order(AMITRIPTYLINE_25, text, repeat=repeat), CYP2D6_PM)
    assert card["indicator"] == "critical" and "low dose" not in card["summary"]
    assert "the guideline's advice applies in full" in card["detail"]


# -- 2. a one-click dose replacement never makes the order riskier ----------------------------


def test_ibuprofen_three_times_daily_keeps_three_times_daily(call):
    card = card_for(call, order(IBUPROFEN_800, "1 tablet three times daily"), CYP2C9_PM)
    assert labels(card) == [
        "Replace with Ibuprofen 200 MG Oral Tablet: 1 tablet 3 times a day (600 mg/day; CPIC: "
        "about 300–600 mg/day)"
    ]
    create, delete = card["suggestions"][0]["actions"]
    assert (create["type"], delete["type"]) == ("create", "delete")
    dosage = create["resource"]["dosageInstruction"][0]
    assert dosage["timing"]["repeat"] == {"frequency": 3, "period": 1, "periodUnit": "d"}
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 1
    assert dosage["route"]["coding"][0]["code"] == ORAL


def test_ibuprofen_every_6_hours_keeps_the_interval_and_never_raises_the_single_dose(call):
    card = card_for(call, order(IBUPROFEN_400, "1 tablet every 6 hours"), CYP2C9_PM)
    [label] = labels(card)
    assert label.startswith("Replace with Ibuprofen 100 MG Oral Tablet: 1 tablet every 6 hours")
    repeat = card["suggestions"][0]["actions"][0]["resource"]["dosageInstruction"][0]["timing"]
    assert repeat == {"repeat": {"frequency": 1, "period": 6, "periodUnit": "h"}}


def test_as_needed_and_a_range_of_intervals_are_kept(call):
    card = card_for(call, order(IBUPROFEN_400, "1 tablet q4-6h prn pain"), CYP2C9_PM)
    [suggestion] = card["suggestions"]
    assert "every 4–6 hours, as needed (400–600 mg/day" in suggestion["label"]
    dosage = suggestion["actions"][0]["resource"]["dosageInstruction"][0]
    assert dosage["asNeededBoolean"] is True
    assert dosage["timing"]["repeat"] == {
        "frequency": 1,
        "period": 4,
        "periodMax": 6,
        "periodUnit": "h",
    }


@pytest.mark.parametrize(
    ("product", "text", "why"),
    [
        (CALDOLOR, "800 mg IV every 6 hours", "No one-click dose: the order is an injection"),
        (
            MELOXICAM_INJECTION,
            "30 mg IV once daily",
            "Naproxen 500 MG Oral Tablet is not offered: the order is an injection",
        ),
    ],
)
def test_an_intravenous_nsaid_is_never_switched_to_tablets(call, product, text, why):
    card = card_for(call, order(product, text, route=INTRAVENOUS), CYP2C9_PM)
    assert card["indicator"] == "warning"
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert why in one_click_note(card)


def test_an_oral_product_given_by_another_route_is_not_judged_for_a_one_click(call):
    """The product says tablet, the order says intravenous: which is meant is unclear."""
    card = card_for(
        call, order(IBUPROFEN_800, "1 tablet three times daily", route=INTRAVENOUS), CYP2C9_PM
    )
    assert "suggestions" not in card
    assert "route is not stated clearly" in one_click_note(card)


@pytest.mark.parametrize(
    ("product", "text"),
    [(CELECOXIB_50, "1 capsule once daily"), (CELECOXIB_100, "1 capsule once daily")],
)
def test_an_order_already_within_the_guidelines_range_gets_no_dose_card(call, product, text):
    """Celecoxib 50 or 100 mg/day for a CYP2C9 poor metabolizer is inside CPIC's 25–50% of
    200 mg/day: an info card saying so, no replacement (before: 'Adjust dose' and a
    replacement doubling the dose, or one identical to the order)."""
    card = card_for(call, order(product, text), CYP2C9_PM)
    assert card["indicator"] == "info"
    assert card["summary"].startswith("Celecoxib dose within the guideline's adjusted dose")
    assert "No change needed" in card["detail"] and "suggestions" not in card


@pytest.mark.parametrize(
    ("product", "others"),
    [(HYDROCODONE_IBUPROFEN, "hydrocodone"), (FAMOTIDINE_IBUPROFEN, "famotidine")],
)
def test_a_combination_keeps_its_other_ingredients_or_gets_no_one_click(call, product, others):
    """No lower-ibuprofen product keeps the hydrocodone (or famotidine) at its strength: no
    replacement (before: plain ibuprofen, the opioid or the gastro-protection dropped)."""
    card = card_for(call, order(product, "2 tablets every 6 hours"), CYP2C9_PM)
    assert card["indicator"] == "warning" and "suggestions" not in card
    assert f"lowers the ibuprofen to about 300–600 mg/day every 6 hours and keeps the {others}" in (
        one_click_note(card)
    )


def test_amitriptyline_perphenazine_keeps_the_perphenazine(call):
    card = card_for(
        call, order(AMITRIPTYLINE_PERPHENAZINE, "1 tablet three times daily"), CYP2D6_IM
    )
    [suggestion] = card["suggestions"]
    assert suggestion["label"].startswith(
        "Replace with Amitriptyline Hydrochloride 10 MG / Perphenazine 2 MG Oral Tablet: "
        "1 tablet 3 times a day (30 mg/day; CPIC: about 56.25 mg/day)"
    )


def test_nortriptyline_once_daily_stays_once_daily_at_no_more_than_cpics_figure(call):
    """CPIC: 75% of 50 mg/day = 37.5 mg/day; rounded down to whole capsules once a day."""
    card = card_for(call, order(NORTRIPTYLINE_50, "1 capsule once daily"), CYP2D6_IM)
    [suggestion] = card["suggestions"]
    assert suggestion["label"] == (
        "Replace with Nortriptyline 10 MG Oral Capsule: 3 capsules once a day (30 mg/day; CPIC: "
        "about 37.5 mg/day)"
    )


def test_an_unreadable_frequency_gives_the_target_in_words_and_no_one_click(call):
    card = card_for(call, order(IBUPROFEN_800, "as directed"), CYP2C9_PM)
    assert "suggestions" not in card
    assert "about 300–600 mg/day" in card["detail"]
    assert "not read with certainty (no frequency stated)" in one_click_note(card)


@pytest.mark.parametrize("version", ["STU3", "DSTU2"])
def test_the_dose_replacement_is_written_in_the_orders_fhir_version(call, version):
    draft = order(IBUPROFEN_800, "1 tablet three times daily", tablets=1, version=version)
    card = card_for(call, draft, CYP2C9_PM)
    new = card["suggestions"][0]["actions"][0]["resource"]
    dosage = new["dosageInstruction"][0]
    assert "doseQuantity" in dosage and "doseAndRate" not in dosage
    assert new["resourceType"] == ("MedicationOrder" if version == "DSTU2" else "MedicationRequest")


# -- alternatives: route, ingredients, opioid strength -----------------------------------------


def test_a_combinations_other_ingredients_are_kept_by_the_alternative(call):
    """Codeine with acetaminophen, butalbital and caffeine: the replacement keeps all three."""
    card = card_for(call, order(FIORICET_CODEINE, "1 capsule every 4 hours"), CYP2D6_UM)
    assert labels(card) == [
        "Replace with Acetaminophen 325 MG / butalbital 50 MG / Caffeine 40 MG Oral Capsule "
        "alone (set dose); a non-opioid option"
    ]


def test_dihydrocodeine_never_gets_a_stronger_opioid(call):
    """Dihydrocodeine 16 mg is 4 MME (CDC 2018 compilation): morphine 15 mg and
    hydromorphone 2 mg are stronger and not offered (before: both were)."""
    card = card_for(call, order(DIHYDROCODEINE, "1 capsule every 4 hours"), CYP2D6_UM)
    assert not any("Morphine" in lb or "Hydromorphone" in lb for lb in labels(card))
    note = one_click_note(card)
    assert "Morphine Sulfate 15 MG Oral Tablet is not offered: 15 MME per tablet" in note
    assert "(4 MME; CDC 2018 compilation and CDC 2022 factors)" in note


def test_an_opioid_without_an_mme_factor_gets_no_opioid_replacement(knowledge, monkeypatch):
    """Take tramadol's factor away: no opioid is offered for it, only the non-opioid."""
    from cds_service.clinical.medications import IdentifiedDrug
    from cds_service.clinical.recommendations import Match
    from cds_service.clinical.suggestions import replacements
    from cds_service.fhir.hook_context import DraftOrder
    from cds_service.knowledge.models import MmeFactor

    factors = {**knowledge.mme.factors, "tramadol": MmeFactor(factor=None, reason="no factor")}
    monkeypatch.setattr(knowledge, "mme", knowledge.mme.model_copy(update={"factors": factors}))
    draft = DraftOrder(order(TRAMADOL, "2 tablets every 6 hours", tablets=2))
    identified = IdentifiedDrug("tramadol", draft, "RxNorm 835603", TRAMADOL[1])
    row = next(r for r in knowledge.recommendations_for("tramadol") if r.id == "tramadol-cyp2d6-um")
    found, notes = replacements(Match(identified, row, ()), knowledge, [draft])
    assert [s["label"] for s in found] == [
        "Replace with Acetaminophen 500 MG Oral Tablet alone (set dose); a non-opioid option"
    ]
    assert any("tramadol has no oral MME factor on file" in n for n in notes)


def test_every_opioid_has_an_mme_entry_with_its_source(knowledge):
    opioids = [name for name, d in knowledge.drugs.items() if d.drug_class == "opioid"]
    assert {"codeine", "tramadol", "dihydrocodeine", "oliceridine"} <= set(opioids)
    for name in opioids:
        entry = knowledge.mme.factors[name]
        if entry.factor is None:
            assert entry.reason
        else:
            assert knowledge.mme.sources[entry.source or ""].url.startswith("https://")
    assert knowledge.mme.cited("codeine") == "CDC 2022"
    assert knowledge.mme.cited("dihydrocodeine") == "CDC 2018 compilation"


def test_an_uncoded_order_gets_no_replacement_and_the_card_says_why(call):
    draft = med_order(None, order_id="rx-2")
    draft["medicationCodeableConcept"] = {"text": "Tylenol with codeine #3"}
    card = card_for(call, draft, CYP2D6_UM)
    assert card["indicator"] == "critical" and "suggestions" not in card
    assert "the order's product is not coded" in one_click_note(card)


def test_taking_a_replacement_in_the_sandbox_replaces_the_drug(call):
    """The public sandbox acts on a suggestion's first usable action: a create first."""
    card = card_for(call, order(TRAMADOL, "1 tablet every 6 hours", tablets=1), CYP2D6_UM)
    for suggestion in card["suggestions"]:
        kinds = [a["type"] for a in suggestion["actions"]]
        assert kinds == sorted(kinds)  # every 'create' before every 'delete'
        first = suggestion["actions"][0]["resource"]["medicationCodeableConcept"]
        assert first["text"] and first["coding"][0]["code"]


# -- whatever the dosage looks like, never a 500 ------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(-1e6, 1e6, allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    ("text",),
    ("patientInstruction",),
    ("timing",),
    ("timing", "repeat"),
    ("timing", "repeat", "frequency"),
    ("timing", "repeat", "period"),
    ("timing", "repeat", "periodUnit"),
    ("timing", "repeat", "when"),
    ("timing", "repeat", "timeOfDay"),
    ("timing", "code"),
    ("timing", "code", "coding"),
    ("doseAndRate",),
    ("doseQuantity",),
    ("doseRange",),
    ("route",),
    ("route", "coding"),
    ("maxDosePerPeriod",),
    ("asNeededBoolean",),
    ("sequence",),
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    product=st.sampled_from([IBUPROFEN_800, FIORICET_CODEINE, TRAMADOL, AMITRIPTYLINE_25]),
    field=st.sampled_from(FIELDS),
    value=JSON,
    whole=st.sampled_from([None, 5, "x", [5], {"a": [1]}]),
)
def test_any_dosage_shape_gives_an_answer_never_a_500(call, product, field, value, whole):
    draft = order(
        product,
        "1 tablet three times daily",
        tablets=1,
        repeat={"frequency": 3, "period": 1, "periodUnit": "d"},
    )
    line = draft["dosageInstruction"][0]
    target = line
    for key in field[:-1]:
        target = target.setdefault(key, {}) if isinstance(target.get(key), dict) else target
    target[field[-1]] = value
    if whole is not None:
        draft["dosageInstruction"] = [line, whole]
    result = CYP2C9_PM if product == IBUPROFEN_800 else CYP2D6_UM
    status, answer = call(hook_request("order-select", [draft], prefetch=with_results(result)))
    assert status == 200, answer
