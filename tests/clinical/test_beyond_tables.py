"""Beyond the guideline tables: interacting drugs, age, the order's dose, untested patients
(issue: what should I do for this patient and this order)."""

from __future__ import annotations

import re

import pytest
import responses
from builders import (
    APAP_CODEINE,
    PATIENT,
    TRAMADOL,
    bundle,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)

FHIR = "https://ehr.example.org/fhir"
PAROXETINE = ("314199", "Paroxetine 20 MG Oral Tablet")
DULOXETINE = ("596926", "duloxetine 30 MG Delayed Release Oral Capsule")
AMITRIPTYLINE_10 = ("856783", "amitriptyline hydrochloride 10 MG Oral Tablet")
AMITRIPTYLINE_25 = ("856834", "amitriptyline hydrochloride 25 MG Oral Tablet")


def active(product, status="active", order_id="parox-1", **extra):
    res = med_order(product, order_id=order_id)
    res["status"] = status
    res.update(extra)
    return res


def ask(call, order, *observations, meds=None, patient=None, others=(), hook="order-select"):
    prefetch = {**with_results(*observations), "activeMedications": bundle(*(meds or []))}
    prefetch["patient"] = patient
    body = hook_request(hook, [order, *others], prefetch=prefetch)
    if hook == "order-select":
        body["context"]["selections"] = [f"MedicationRequest/{order['id']}"]
    status, answer = call(body)
    assert status == 200
    return answer["cards"]


# -- phenoconversion ------------------------------------------------------------------------


def test_strong_inhibitor_makes_a_normal_metabolizer_act_as_a_poor_one(call):
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), meds=[active(PAROXETINE)])
    assert card["indicator"] == "critical"
    assert "codeine" in card["summary"] and "CYP2D6" in card["summary"]
    assert "paroxetine" in card["summary"]
    assert (
        "CYP2D6 normal metabolizer by genotype, functionally a poor metabolizer while "
        "taking paroxetine" in card["detail"]
    )
    assert "By genotype alone this order would not alert" in card["detail"]


FLUOXETINE_MED = {
    "resourceType": "Medication",
    "id": "flx",
    "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "4493"}]},
}


def by_reference(reference: str) -> dict:
    order = active(PAROXETINE, order_id="flx-order")
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": reference}
    return order


def test_an_inhibitor_in_a_contained_medication_counts(call):
    order = by_reference("#flx")
    order["contained"] = [FLUOXETINE_MED]
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), meds=[order])
    assert card["indicator"] == "critical" and "fluoxetine" in card["summary"]


def test_an_inhibitor_in_a_medication_sent_beside_the_active_orders_counts(call):
    meds = [by_reference("Medication/flx"), FLUOXETINE_MED]
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), meds=meds)
    assert "fluoxetine" in card["summary"]


@pytest.mark.parametrize("status", ["stopped", "completed", "cancelled", "entered-in-error"])
def test_inhibitor_not_in_force_does_not_count(call, status):
    # (paroxetine's effect ends with it: no lasting effect in the knowledge)
    meds = [active(PAROXETINE, status=status)]
    assert ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), meds=meds) == []


def test_inhibitor_whose_period_has_ended_does_not_count(call):
    ended = active(PAROXETINE, dispenseRequest={"validityPeriod": {"end": "2020-01-01"}})
    assert ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), meds=[ended]) == []


def test_inhibitor_ordered_in_the_same_session_counts(call):
    paroxetine = active(PAROXETINE, status="draft", order_id="draft-parox")
    cards = ask(call, med_order(TRAMADOL), genotype_obs("*1/*1"), others=[paroxetine])
    [card] = cards
    assert "tramadol" in card["summary"] and "paroxetine" in card["summary"]
    assert "ordered in this session" in card["detail"]


def test_inhibitor_found_by_name_only(call):
    by_name = active(None)
    by_name["medicationCodeableConcept"] = {"text": "PAXIL (paroxetine) 10 mg"}
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), meds=[by_name])
    assert "paroxetine" in card["summary"]


@pytest.mark.parametrize(
    ("text", "inhibitor"), [("Paxil 20 mg daily", "paroxetine"), ("Wellbutrin XL", "bupropion")]
)
def test_an_inhibitor_named_by_its_brand_only_counts(call, text, inhibitor):
    by_brand = active(None)
    by_brand["medicationCodeableConcept"] = {"text": text}
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), meds=[by_brand])
    assert inhibitor in card["summary"]


@pytest.mark.parametrize("text", ["non-paroxetine antidepressant", "fluoxetine-free regimen"])
def test_an_inhibitor_named_only_in_negated_form_does_not_count(call, text):
    negated = active(None)
    negated["medicationCodeableConcept"] = {"text": text}
    assert ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), meds=[negated]) == []


def test_moderate_inhibitor_halves_the_score(call):
    # *1/*41 = 1.25 (normal); x0.5 = 0.625: intermediate -> codeine IM card (info)
    meds = [active(DULOXETINE)]
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*41"), meds=meds)
    assert card["indicator"] == "info" and "intermediate" in card["summary"]
    assert "duloxetine" in card["summary"]


def test_moderate_inhibitor_on_a_phenotype_only_result_is_called_only_when_the_band_agrees(call):
    # NM band 1.25-2.25 x0.5 = 0.625-1.125: all intermediate -> called
    [card] = ask(
        call,
        med_order(APAP_CODEINE),
        phenotype_obs("Normal Metabolizer"),
        meds=[active(DULOXETINE)],
    )
    assert "intermediate" in card["summary"]
    # UM band (>2.25) x0.5 spans IM, NM, UM: not called, the genetic phenotype acts
    [card] = ask(
        call,
        med_order(APAP_CODEINE),
        phenotype_obs("Ultrarapid Metabolizer"),
        meds=[active(DULOXETINE)],
    )
    assert "ultrarapid" in card["summary"] and "cannot be called" in card["detail"]
    assert "by how much, this result cannot tell" in card["detail"]


# -- an interacting drug never lowers or removes the genotype's alert (issue 22, item 1) ----


@pytest.mark.parametrize("product", [APAP_CODEINE, TRAMADOL])
def test_an_ultrarapid_metabolizer_on_a_moderate_inhibitor_keeps_the_genotypes_avoid(call, product):
    """*1/*1x2 (activity score 3) on duloxetine: x0.5 gives 1.5, a normal metabolizer. The
    genotype's strong 'avoid' stands; the card says both readings and why the inhibitor must
    not be relied on."""
    [card] = ask(call, med_order(product), genotype_obs("*1/*1x2"), meds=[active(DULOXETINE)])
    drug = "codeine" if product == APAP_CODEINE else "tramadol"
    assert card["indicator"] == "critical"
    assert card["summary"] == (
        f"Avoid {drug}: CYP2D6 ultrarapid metabolizer by genotype (taking duloxetine)"
    )
    detail = card["detail"]
    assert "ultrarapid metabolizer by genotype, for life" in detail
    assert "duloxetine" in detail and "to that of a normal metabolizer" in detail
    assert "do not rely on it" in detail
    assert "the ultrarapid metabolizer's risk of toxicity returns" in detail
    assert card["suggestions"]  # the genotype's alternatives are offered


def test_the_same_patient_reported_as_phenotype_only_gets_the_same_card(call):
    [card] = ask(
        call,
        med_order(APAP_CODEINE),
        phenotype_obs("Ultrarapid Metabolizer"),
        meds=[active(DULOXETINE)],
    )
    assert card["indicator"] == "critical"
    assert card["summary"] == (
        "Avoid codeine: CYP2D6 ultrarapid metabolizer by genotype (taking duloxetine)"
    )
    assert "do not rely on it" in card["detail"]


def test_an_ultrarapid_metabolizer_on_a_strong_inhibitor_is_warned_of_toxicity(call):
    """Paroxetine makes the score 0 (a poor metabolizer: codeine would not work); today's
    card spoke only of that. The genotype's toxicity advice leads, the other reading beside."""
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1x2"), meds=[active(PAROXETINE)])
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Avoid codeine: CYP2D6 ultrarapid metabolizer by genotype")
    assert "**Why:** Faster conversion of codeine to morphine" in card["detail"]  # the UM row
    assert "to that of a poor metabolizer, which alone would mean: avoid" in card["detail"]
    assert "risk of toxicity returns" in card["detail"]


def test_an_inhibitor_not_in_force_leaves_the_plain_ultrarapid_card(call):
    """Negative control: a duloxetine order that has ended is not taken: the usual card,
    without the inhibitor's paragraph."""
    ended = active(DULOXETINE, dispenseRequest={"validityPeriod": {"end": "2020-01-01"}})
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1x2"), meds=[ended])
    assert card["summary"] == "Avoid codeine: CYP2D6 ultrarapid metabolizer"
    assert "duloxetine" not in card["detail"] and "rely" not in card["detail"]


def test_an_inhibitor_that_raises_the_advice_still_does(call):
    """*1/*41 (normal) on duloxetine: an intermediate metabolizer: the caution is added, and
    the genotype alone would give no card."""
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*41"), meds=[active(DULOXETINE)])
    assert card["indicator"] == "info"
    assert card["summary"].endswith("CYP2D6 intermediate metabolizer while taking duloxetine")
    assert "By genotype alone this order would not alert" in card["detail"]


def test_a_genotype_advice_milder_than_the_inhibitors_is_named_beside_it(call):
    """*4/*41 (intermediate: caution) on paroxetine: a poor metabolizer (avoid) leads; the
    genotype's own advice is named."""
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*4/*41"), meds=[active(PAROXETINE)])
    assert card["indicator"] == "critical" and "poor metabolizer while taking" in card["summary"]
    assert (
        "By genotype alone: Reduced or uncertain response possible (CPIC, moderate)."
        in (card["detail"])
    )


def test_explain_shows_both_readings_and_which_is_followed(tmp_path, capsys):
    import json

    from cds_service.cli import main as cli

    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch={
            **with_results(genotype_obs("*1/*1x2")),
            "activeMedications": bundle(active(DULOXETINE)),
            "patient": None,
        },
    )
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    assert cli(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ultrarapid metabolizer by genotype, functionally normal metabolizer" in out
    assert "codeine [CYP2D6 ultrarapid metabolizer by genotype]: codeine-cyp2d6-um" in out
    assert "codeine [CYP2D6 normal metabolizer while taking duloxetine]: codeine-cyp2d6-nm" in out
    assert "the most severe advice is followed (CYP2D6 ultrarapid metabolizer by genotype)" in out


def test_no_cyp2d6_result_means_no_interaction_card(call):
    assert ask(call, med_order(APAP_CODEINE), meds=[active(PAROXETINE)]) == []


@responses.activate
def test_active_medications_are_read_from_the_fhir_server_without_prefetch(call):
    responses.get(
        re.compile(re.escape(FHIR) + r"/Observation\?.*"), json=bundle(genotype_obs("*1/*1"))
    )
    responses.get(
        re.compile(re.escape(FHIR) + r"/MedicationRequest\?.*"), json=bundle(active(PAROXETINE))
    )
    responses.get(f"{FHIR}/Patient/{PATIENT}", json={"resourceType": "Patient", "id": PATIENT})
    body = hook_request("order-select", [med_order(APAP_CODEINE)], fhir_server=FHIR, token="t")
    status, answer = call(body)
    assert status == 200
    [card] = answer["cards"]
    assert "paroxetine" in card["summary"]
    med_call = next(c for c in responses.calls if "/MedicationRequest?" in c.request.url)
    assert "status=active" in med_call.request.url
    assert med_call.request.headers["Authorization"] == "Bearer t"


# -- age ------------------------------------------------------------------------------------


def child(years_ago: int) -> dict:
    from datetime import date

    today = date.today()
    return {
        "resourceType": "Patient",
        "id": PATIENT,
        "birthDate": f"{today.year - years_ago}-01-01",
    }


def test_tramadol_for_a_seven_year_old_gets_a_card_whatever_the_genotype(call):
    cards = ask(call, med_order(TRAMADOL), genotype_obs("*1/*1"), patient=child(7))
    [card] = cards
    assert card["indicator"] == "critical" and "under 12" in card["summary"]
    assert "fda.gov" in card["source"]["url"]


def test_adult_gets_no_age_card(call):
    assert ask(call, med_order(TRAMADOL), genotype_obs("*1/*1"), patient=child(40)) == []


def test_codeine_after_tonsillectomy_under_18(call):
    order = med_order(APAP_CODEINE)
    order["reasonCode"] = [{"text": "Pain after tonsillectomy"}]
    [card] = ask(call, order, patient=child(15))
    assert "tonsillectomy" in card["summary"]
    assert ask(call, med_order(APAP_CODEINE), patient=child(15)) == []  # no such reason


def born(birth_date: str, patient_id: str = PATIENT) -> dict:
    return {"resourceType": "Patient", "id": patient_id, "birthDate": birth_date}


def years_ago(years: int, rest: str = "") -> str:
    from datetime import date

    return f"{date.today().year - years}{rest}"


@pytest.mark.parametrize("birth_date", [years_ago(6), years_ago(6, "-06"), years_ago(10, "-12")])
def test_a_child_whose_birth_date_is_a_year_or_a_month_still_gets_the_age_card(call, birth_date):
    """FHIR allows a birth date of a year, or a year and month: a child born in a year six
    years ago is under 12 whichever day it was."""
    [card] = ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), patient=born(birth_date))
    assert card["indicator"] == "critical" and "under 12" in card["summary"]


@pytest.mark.parametrize("birth_date", ["1970", "1970-05", years_ago(13)])
def test_an_adult_whose_birth_date_is_partial_gets_no_age_card(call, birth_date):
    assert ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), patient=born(birth_date)) == []


def test_another_patients_record_never_drives_the_age_rules(call):
    """The prefetched Patient is someone else (a child): its birth date is not this
    patient's, so no age card."""
    other = born(years_ago(6, "-01-01"), patient_id="someone-else")
    assert ask(call, med_order(APAP_CODEINE), genotype_obs("*1/*1"), patient=other) == []


@pytest.mark.parametrize(
    ("birth_date", "ages"),
    [
        ("2014-06-15", (12, 12)),
        ("2014-06", (11, 12)),  # born 2014-06-01..15: 12; 16..30: 11 on 2026-06-15
        ("2014", (11, 12)),
        ("2020", (5, 6)),
        ("2026-06", (0, 0)),  # born this month, by today
        ("2026-07", None),  # the future
        ("2014-13", None),
        ("14-06-15", None),
    ],
)
def test_age_range_from_full_and_partial_birth_dates(birth_date, ages):
    from datetime import date

    from cds_service.clinical.order_details import age_range

    assert age_range({"birthDate": birth_date}, today=date(2026, 6, 15)) == ages


def test_a_partial_birth_date_across_the_limit_gives_a_warning_and_says_why(knowledge):
    """Born in 2014, on 2026-06-15 the patient is 11 or 12: not silence (issue 22), but a
    warning to confirm the age; the trace says what is uncertain."""
    from datetime import date

    from cds_service.clinical.label_rules import age_rules
    from cds_service.clinical.medications import IdentifiedDrug
    from cds_service.core.trace import Trace
    from cds_service.fhir.hook_context import DraftOrder

    trace = Trace()
    drug = IdentifiedDrug("codeine", DraftOrder(med_order(APAP_CODEINE)), "RxNorm", "codeine")
    [notice] = age_rules([drug], {"birthDate": "2014"}, knowledge, trace, today=date(2026, 6, 15))
    assert notice.id == "codeine-under-12" and notice.indicator == "warning"
    assert "may be under 12" in notice.summary and "confirm age" in notice.summary
    assert any(
        "codeine-under-12 applies (warning, uncertain: confirm)" in message
        and "may be 11 or 12 years old" in message
        for _, message in trace.lines
    )


# -- the order's dose -----------------------------------------------------------------------


def amitriptyline(product, tablets: float, per_day: int) -> dict:
    order = med_order(product)
    order["dosageInstruction"] = [
        {
            "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": tablets, "unit": "tablet"}}],
        }
    ]
    return order


def test_low_tricyclic_dose_for_a_poor_metabolizer_is_a_caution(call):
    [card] = ask(call, amitriptyline(AMITRIPTYLINE_10, 1, 1), genotype_obs("*4/*4"))
    assert card["indicator"] == "info"
    assert "low dose" in card["summary"] and "10 mg/day" in card["detail"]
    assert "suggestions" not in card


def line(tablets: float, per_day: int, **repeat) -> dict:
    return {
        "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d", **repeat}},
        "doseAndRate": [{"doseQuantity": {"value": tablets, "unit": "tablet"}}],
    }


def test_a_low_first_dosage_line_does_not_hide_a_high_second_one(call):
    """10 mg a day plus 40 mg a day at the same time is 50 mg/day: not a low dose."""
    order = amitriptyline(AMITRIPTYLINE_10, 1, 1)
    order["dosageInstruction"].append(line(4, 1))
    [card] = ask(call, order, genotype_obs("*4/*4"))
    assert card["indicator"] != "info" and "low dose" not in card["summary"]
    assert "up to 50 mg/day" in card["detail"]


def test_frequency_max_counts_for_the_low_dose_check(call):
    """Once a day, up to six times: 10 to 60 mg/day."""
    order = amitriptyline(AMITRIPTYLINE_10, 1, 1)
    order["dosageInstruction"][0]["timing"]["repeat"]["frequencyMax"] = 6
    [card] = ask(call, order, genotype_obs("*4/*4"))
    assert card["indicator"] != "info" and "10–60 mg/day (1–6 times a day)" in card["detail"]


def test_low_doses_stay_low_whatever_their_shape(call):
    """A range of 1 to 2 tablets once a day, and a taper of 1 then 2 tablets: at most 20 mg
    a day, a low dose either way."""
    ranged = amitriptyline(AMITRIPTYLINE_10, 1, 1)
    ranged["dosageInstruction"][0]["doseAndRate"] = [
        {
            "doseRange": {
                "low": {"value": 1, "unit": "tablet"},
                "high": {"value": 2, "unit": "tablet"},
            }
        }
    ]
    taper = amitriptyline(AMITRIPTYLINE_10, 1, 1)
    taper["dosageInstruction"] = [
        {**line(1, 1), "sequence": 1},
        {**line(2, 1), "sequence": 2},
    ]
    for order in (ranged, taper):
        [card] = ask(call, order, genotype_obs("*4/*4"))
        assert card["indicator"] == "info" and "low dose" in card["summary"]


def test_a_line_without_a_sequence_goes_alongside_every_numbered_step(call):
    """Step 1: 1 tablet a day; and, with no sequence, 2 tablets a day alongside: 30 mg/day."""
    order = amitriptyline(AMITRIPTYLINE_10, 1, 1)
    order["dosageInstruction"] = [{**line(1, 1), "sequence": 1}, line(2, 1)]
    [card] = ask(call, order, genotype_obs("*4/*4"))
    assert card["indicator"] != "info" and "up to 30 mg/day" in card["detail"]


def test_an_order_with_more_dosage_lines_than_are_read_is_never_a_low_dose(call):
    order = amitriptyline(AMITRIPTYLINE_10, 1, 1)
    order["dosageInstruction"] = [{**line(1, 1), "sequence": n} for n in range(1, 21)]
    order["dosageInstruction"].append({**line(10, 1), "sequence": 21})  # 100 mg a day
    [card] = ask(call, order, genotype_obs("*4/*4"))
    assert card["indicator"] != "info"


def test_an_unreadable_second_dosage_line_is_never_taken_for_a_low_dose(call):
    order = amitriptyline(AMITRIPTYLINE_10, 1, 1)
    order["dosageInstruction"].append({"text": "as directed"})
    [card] = ask(call, order, genotype_obs("*4/*4"))
    assert card["indicator"] != "info"


@pytest.mark.parametrize("unit", ["{pill}", "{tablet}", "{Tablet}", "{tbl}", "tablet"])
def test_tablets_as_ucum_annotations_are_read_as_tablets(call, unit):
    """The public sandbox writes doses as '{pill}': 1 tablet of 10 mg once a day is a low
    dose whatever the annotation says."""
    order = amitriptyline(AMITRIPTYLINE_10, 1, 1)
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["unit"] = unit
    [card] = ask(call, order, genotype_obs("*4/*4"))
    assert card["indicator"] == "info" and "10 mg/day" in card["detail"]


def test_depression_dose_keeps_the_guideline_card_with_the_reduced_dose(call):
    [card] = ask(call, amitriptyline(AMITRIPTYLINE_25, 1, 3), genotype_obs("*1/*4"))  # 75 mg/day
    assert card["indicator"] == "warning"
    assert "ordered amitriptyline 25 mg per dose, 75 mg/day" in card["detail"]
    assert "start at 75% of the ordered daily dose, about 56.25 mg/day" in card["detail"]


def test_nsaid_dose_computed_from_the_lowest_starting_dose(call):
    celecoxib = med_order(("205323", "celecoxib 200 MG Oral Capsule"))
    celecoxib["dosageInstruction"] = [
        {
            "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "capsule"}}],
        }
    ]
    [card] = ask(call, celecoxib, genotype_obs("*3/*3", gene="CYP2C9"))
    assert "ordered celecoxib 200 mg per dose, 400 mg/day" in card["detail"]
    assert "25–50% of the lowest starting dose (200 mg/day), about 50–100 mg/day" in card["detail"]
    [suggestion] = card["suggestions"]
    assert (
        suggestion["label"]
        == "Replace with celecoxib 50 MG Oral Capsule: 1 capsule twice a day (100 mg/day; "
        "CPIC: about 50–100 mg/day)"
    )
    new = suggestion["actions"][0]["resource"]  # the create comes first
    assert new["dosageInstruction"][0]["timing"]["repeat"] == {
        "frequency": 2,
        "period": 1,
        "periodUnit": "d",
    }


def test_more_impaired_never_milder(call, knowledge):
    from cds_service.clinical.cards import indicator_with_floor

    rows = {r.id: r for r in knowledge.recommendations}
    levels = {"info": 1, "warning": 2, "critical": 3}
    pm_pm = indicator_with_floor(rows["amitriptyline-cyp2d6-pm-cyp2c19-pm"], knowledge)
    pm_nm = indicator_with_floor(rows["amitriptyline-cyp2d6-pm-cyp2c19-nm"], knowledge)
    assert levels[pm_pm] >= levels[pm_nm]


# -- FDA label pairs CPIC does not cover ----------------------------------------------------


def test_oliceridine_poor_metabolizer_gets_the_fda_label_card(call):
    oliceridine = med_order(None)
    oliceridine["medicationCodeableConcept"] = {"text": "Olinvyk (oliceridine) 1 mg/mL injection"}
    [card] = ask(call, oliceridine, genotype_obs("*4/*4"))
    assert card["indicator"] == "info" and "oliceridine" in card["summary"].lower()
    assert "fda.gov" in card["source"]["url"] and "PubMed" not in str(card["links"])
    assert "label statement" in card["detail"]


def test_fda_label_statement_shown_on_the_cpic_card(call):
    [card] = ask(
        call,
        med_order(("205323", "celecoxib 200 MG Oral Capsule")),
        genotype_obs("*3/*3", gene="CYP2C9"),
    )
    assert "FDA label (Celebrex)" in card["detail"] and "CPIC" in card["source"]["label"]


@pytest.mark.parametrize(
    "dosage",
    [
        {"text": "10 mg at night"},
        {"text": "1 tablet at bedtime", "timing": {"code": {"text": "HS"}}},
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg"}}],
        },
    ],
)
def test_low_dose_read_from_every_way_an_order_states_it(call, dosage):
    order = med_order(AMITRIPTYLINE_10)
    order["dosageInstruction"] = [dosage]
    [card] = ask(call, order, genotype_obs("*4/*4"))
    assert card["indicator"] == "info" and "low dose" in card["summary"]
