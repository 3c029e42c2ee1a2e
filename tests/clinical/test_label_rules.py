"""FDA age and label rules from the whole chart, not only words in the order (issue 22, item 5):
partial birth dates, tonsillectomy from codes, references and Procedures, opioid cough and
cold medicines, dihydrocodeine, breastfeeding, and adolescents with breathing risk factors.
Each alert has its negative control."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
import responses
from builders import APAP_CODEINE, PATIENT, TRAMADOL, bundle, genotype_obs, hook_request, med_order

FHIR = "https://ehr.example.org/fhir"
TODAY = date(2026, 6, 15)
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
LOINC = "http://loinc.org"
PROMETHAZINE_CODEINE = (
    "991486",
    "codeine phosphate 2 MG/ML / promethazine hydrochloride 1.25 MG/ML Oral Solution",
)
CHLORPHENIRAMINE_HYDROCODONE = (
    "857510",
    "12 HR chlorpheniramine polistirex 4 MG / hydrocodone polistirex 5 MG Extended Release "
    "Oral Capsule",
)
HOMATROPINE_HYDROCODONE = (
    "992656",
    "homatropine methylbromide 1.5 MG / hydrocodone bitartrate 5 MG Oral Tablet",
)
APAP_HYDROCODONE = ("856999", "acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet")
APAP_CAFFEINE_DHC = (
    "1234871",
    "acetaminophen 356.4 MG / caffeine 30 MG / dihydrocodeine bitartrate 16 MG Oral Capsule",
)


@pytest.fixture(autouse=True)
def fixed_day(monkeypatch):
    """Ages and date windows reckon from TODAY."""
    monkeypatch.setattr("cds_service.clinical.order_details.current_date", lambda: TODAY)


def born(value: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": PATIENT, "birthDate": value}


def aged(years: int) -> dict[str, Any]:
    return born(f"{TODAY.year - years}-01-01")


def days_ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


def concept(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def procedure(code: dict[str, Any], when: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": extra.pop("id", "proc-1"),
        "status": "completed",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "code": code,
    }
    if when:
        res["performedDateTime"] = when
    res.update(extra)
    return res


def condition(code: dict[str, Any], clinical: str = "active", **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": extra.pop("id", "cond-1"),
        "clinicalStatus": concept(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", clinical
        ),
        "subject": {"reference": f"Patient/{PATIENT}"},
        "code": code,
    }
    res.update(extra)
    return res


def breastfeeding(answer: str, when: str, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": extra.pop("id", "bf-1"),
        "status": "final",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "code": concept(LOINC, "63895-7", "Breastfeeding status"),
        "effectiveDateTime": when,
        "valueCodeableConcept": concept(LOINC, answer),
    }
    res.update(extra)
    return res


TA = concept(SNOMED, "28913000", "Tonsillectomy and adenoidectomy")


def ask(
    call,
    order: dict[str, Any],
    patient: dict[str, Any] | None,
    *,
    procedures: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    **body: Any,
) -> list[dict[str, Any]]:
    """The cards for ``order`` with a normal CYP2D6 genotype (no PGx card), the ``patient``
    and, where given, the chart reads as prefetch (absent keys: not prefetched)."""
    prefetch: dict[str, Any] = {
        "genomicResults": bundle(genotype_obs("*1/*1")),
        "activeMedications": bundle(),
        "patient": patient,
    }
    for key, items in (
        ("recentProcedures", procedures),
        ("activeConditions", conditions),
        ("breastfeedingStatus", statuses),
    ):
        if items is not None:
            prefetch[key] = bundle(*items)
    status, answer = call(hook_request("order-select", [order], prefetch=prefetch, **body))
    assert status == 200, answer
    return answer["cards"]


def with_reason(product: tuple[str, str], **reason: Any) -> dict[str, Any]:
    order = med_order(product)
    order.update(reason)
    return order


def topics(cards: list[dict[str, Any]]) -> dict[str, str]:
    return {c["source"]["topic"]["code"]: c["indicator"] for c in cards}


def explain(order: dict[str, Any], prefetch: dict[str, Any]) -> str:
    from cds_service.core.hook_request import HookRequest
    from cds_service.knowledge.loader import Knowledge
    from cds_service.pipeline import Engine
    from cds_service.settings import Settings, default_knowledge_dir

    engine = Engine(Knowledge(default_knowledge_dir()), Settings())
    body = hook_request("order-select", [order], prefetch=prefetch)
    _, trace = engine.evaluate(HookRequest.model_validate(body))
    return trace.render()


# -- a birth date of a year or a month -----------------------------------------------------


@pytest.mark.parametrize(
    ("birth_date", "ages"),
    [("2014", "11 or 12"), ("2014-06", "11 or 12"), ("2014-07", "11")],
)
def test_a_birth_date_that_may_put_the_patient_under_12_gives_a_warning(call, birth_date, ages):
    """Born in 2014, on 2026-06-15 the patient may be 11 or 12: not silence, a warning."""
    [card] = ask(call, med_order(APAP_CODEINE), born(birth_date))
    if ages == "11":  # born in July 2014: 11 whatever the day, so the contraindication
        assert card["indicator"] == "critical"
        assert card["summary"].startswith("Codeine is contraindicated in children under 12")
        return
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Codeine: the patient may be under 12 — confirm age")
    assert "gives only the year" in card["detail"] or "gives only the month" in card["detail"]
    assert f"{ages} years old" in card["detail"]
    assert card["source"]["topic"]["code"] == "codeine-under-12"


def test_the_same_for_tramadol_and_dihydrocodeine(call):
    assert topics(ask(call, med_order(TRAMADOL), born("2014"))) == {"tramadol-under-12": "warning"}
    assert topics(ask(call, med_order(APAP_CAFFEINE_DHC), born("2014"))) == {
        "dihydrocodeine-under-12": "warning"
    }


@pytest.mark.parametrize("birth_date", ["2014-06-15", "2013", "2013-12"])
def test_a_patient_surely_12_or_over_gets_no_under_12_card(call, birth_date):
    assert ask(call, med_order(APAP_CODEINE), born(birth_date)) == []


def test_a_full_birth_date_under_12_keeps_the_critical_contraindication(call):
    [card] = ask(call, med_order(APAP_CODEINE), born("2014-06-16"))  # 11, 12 tomorrow
    assert card["indicator"] == "critical"
    assert "**This patient:** age 11" in card["detail"]


def test_the_card_cites_the_fda_communication_with_title_date_and_url(call):
    [card] = ask(call, med_order(APAP_CODEINE), aged(7))
    assert (
        "FDA Drug Safety Communication: FDA restricts use of prescription codeine"
        in (card["detail"])
    )
    assert "(2017-04-20)" in card["detail"]
    assert card["source"]["url"].startswith("https://www.fda.gov/drugs/drug-safety-and-avail")


# -- tonsillectomy or adenoidectomy: coded reasons --------------------------------------------


@pytest.mark.parametrize(
    "reason",
    [
        concept(SNOMED, "173422009", "Tonsillectomy"),
        concept(SNOMED, "119954001"),  # adenoid excision, no display
        concept(ICD10PCS, "0CTPXZZ"),  # resection of tonsils, external approach
        concept(ICD10PCS, "0CTQ0ZZ"),  # resection of adenoids
        concept("http://www.ama-assn.org/go/cpt", "42821"),
        concept("urn:oid:2.16.840.1.113883.6.96", "28913000"),  # SNOMED by its OID
    ],
)
def test_a_coded_tonsillectomy_reason_gives_the_contraindication(call, reason):
    cards = ask(call, with_reason(APAP_CODEINE, reasonCode=[reason]), aged(15))
    assert topics(cards) == {"codeine-tonsillectomy-under-18": "critical"}


def test_a_tonsil_disease_reason_suggests_surgery_and_asks_to_confirm(call):
    """J35.01 chronic tonsillitis is the usual reason for the operation, not proof of it."""
    order = with_reason(
        APAP_CODEINE, reasonCode=[concept(ICD10CM, "J35.01", "Chronic tonsillitis")]
    )
    [card] = ask(call, order, aged(15))
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Codeine: may be after tonsillectomy or adenoidectomy")
    assert "only suggested" in card["detail"] and "J35.01" in card["detail"]


def test_acute_tonsillitis_or_an_unrelated_code_is_not_a_tonsillectomy(call):
    for reason in (concept(ICD10CM, "J03.90"), concept(SNOMED, "22298006", "Heart attack")):
        assert ask(call, with_reason(APAP_CODEINE, reasonCode=[reason]), aged(15)) == []


# -- tonsillectomy: words -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Pain after tonsillectomy",
        "post-tonsillectomy pain",
        "s/p T&A",
        "pain after T and A",
        "T & A yesterday",
        "T+A",
        "adenotonsillectomy",
        "Tonsilloadenoidectomy, day 2",
        "pain after T&amp;A",  # HTML-escaped by the sender
        "ADENOIDECTOMY",
    ],
)
def test_tonsillectomy_words_and_abbreviations_count(call, text):
    order = with_reason(TRAMADOL, reasonCode=[{"text": text}])
    assert topics(ask(call, order, aged(16))) == {"tramadol-tonsillectomy-under-18": "critical"}


@pytest.mark.parametrize(
    "text",
    [
        "PAT&AMB follow-up",  # the letters T&A inside a word
        "ST&ART protocol",
        "code XT&A9",
        "T and a half days of pain",  # 'T and A' is upper case only
        "tonsillitis",
        "no tonsillectomy",  # negated
        "without adenoidectomy",
    ],
)
def test_letters_inside_other_words_or_negated_mentions_do_not_count(call, text):
    order = with_reason(TRAMADOL, reasonCode=[{"text": text}])
    assert ask(call, order, aged(16)) == []


def test_an_adult_after_tonsillectomy_gets_no_card(call):
    order = with_reason(APAP_CODEINE, reasonCode=[{"text": "after tonsillectomy"}])
    assert ask(call, order, aged(30)) == []


# -- tonsillectomy: the order's reasonReference ----------------------------------------------


def test_a_reason_reference_to_a_contained_procedure(call):
    order = with_reason(APAP_CODEINE, reasonReference=[{"reference": "#p1"}])
    order["contained"] = [
        {"resourceType": "Procedure", "id": "p1", "status": "completed", "code": TA}
    ]
    assert topics(ask(call, order, aged(14))) == {"codeine-tonsillectomy-under-18": "critical"}


def test_a_reason_reference_to_a_procedure_among_the_prefetched_ones(call):
    """The order names the surgery it is for: its date does not matter."""
    order = with_reason(APAP_CODEINE, reasonReference=[{"reference": "Procedure/old-ta"}])
    old = procedure(TA, days_ago(400), id="old-ta")
    cards = ask(call, order, aged(14), procedures=[old])
    assert topics(cards) == {"codeine-tonsillectomy-under-18": "critical"}


@responses.activate
def test_a_reason_reference_is_read_from_the_fhir_server(call):
    responses.get(
        f"{FHIR}/Procedure/ta-1",
        json=procedure(TA, days_ago(2), id="ta-1"),
    )
    order = with_reason(APAP_CODEINE, reasonReference=[{"reference": "Procedure/ta-1"}])
    cards = ask(call, order, aged(14), procedures=[], fhir_server=FHIR, token="t")
    assert topics(cards) == {"codeine-tonsillectomy-under-18": "critical"}
    [read] = [c for c in responses.calls if "/Procedure/ta-1" in c.request.url]
    assert read.request.headers["Authorization"] == "Bearer t"


def test_an_unreadable_reason_reference_is_judged_by_its_display(call):
    order = with_reason(
        APAP_CODEINE,
        reasonReference=[{"reference": "Procedure/elsewhere", "display": "Adenoidectomy"}],
    )
    assert topics(ask(call, order, aged(14))) == {"codeine-tonsillectomy-under-18": "critical"}
    order["reasonReference"] = [{"reference": "Condition/x", "display": "Sprained ankle"}]
    assert ask(call, order, aged(14)) == []


def test_a_referenced_procedure_entered_in_error_does_not_count(call):
    order = with_reason(APAP_CODEINE, reasonReference=[{"reference": "#p1"}])
    order["contained"] = [
        {"resourceType": "Procedure", "id": "p1", "status": "entered-in-error", "code": TA}
    ]
    assert ask(call, order, aged(14)) == []


# -- tonsillectomy: the patient's recent Procedures ----------------------------------------


def test_a_recent_tonsillectomy_procedure_gives_the_contraindication(call):
    [card] = ask(call, med_order(APAP_CODEINE), aged(15), procedures=[procedure(TA, days_ago(3))])
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Codeine is contraindicated under 18 after tonsillectomy")
    assert "SNOMED CT 28913000" in card["detail"] and days_ago(3) in card["detail"]


@pytest.mark.parametrize(
    "proc",
    [
        procedure(TA, days_ago(200)),  # long ago
        procedure(TA, days_ago(3), status="not-done"),
        procedure(TA, days_ago(3), status="entered-in-error"),
        procedure(TA, days_ago(3), subject={"reference": "Patient/someone-else"}),
        procedure(concept(SNOMED, "80146002", "Appendectomy"), days_ago(3)),
    ],
    ids=["old", "not-done", "entered-in-error", "another-patient", "other-surgery"],
)
def test_procedures_that_do_not_count(call, proc):
    assert ask(call, med_order(APAP_CODEINE), aged(15), procedures=[proc]) == []


def test_a_planned_or_ongoing_tonsillectomy_counts_and_an_undated_one_asks(call):
    planned = procedure(TA, status="preparation")
    assert topics(ask(call, med_order(TRAMADOL), aged(15), procedures=[planned])) == {
        "tramadol-tonsillectomy-under-18": "critical"
    }
    undated = procedure(TA)  # completed, no date: may be recent
    [card] = ask(call, med_order(TRAMADOL), aged(15), procedures=[undated])
    assert card["indicator"] == "warning" and "no date" in card["detail"]


def test_a_procedure_coded_locally_counts_by_its_words(call):
    local = procedure(
        {"text": "Coblation tonsillectomy", "coding": [{"system": "urn:x", "code": "9"}]},
        days_ago(1),
    )
    assert topics(ask(call, med_order(APAP_CODEINE), aged(15), procedures=[local])) == {
        "codeine-tonsillectomy-under-18": "critical"
    }


@responses.activate
def test_procedures_are_read_from_the_fhir_server_newest_first_and_bounded(call):
    responses.get(
        re.compile(re.escape(FHIR) + r"/Observation\?.*"), json=bundle(genotype_obs("*1/*1"))
    )
    responses.get(re.compile(re.escape(FHIR) + r"/MedicationRequest\?.*"), json=bundle())
    responses.get(f"{FHIR}/Patient/{PATIENT}", json=aged(15))
    responses.get(
        re.compile(re.escape(FHIR) + r"/Procedure\?.*"),
        json=bundle(procedure(TA, days_ago(3))),
    )
    responses.get(re.compile(re.escape(FHIR) + r"/Condition\?.*"), json=bundle())
    body = hook_request("order-select", [med_order(APAP_CODEINE)], fhir_server=FHIR, token="t")
    status, answer = call(body)
    assert status == 200
    assert topics(answer["cards"]) == {"codeine-tonsillectomy-under-18": "critical"}
    [search] = [c for c in responses.calls if "/Procedure?" in c.request.url]
    assert f"patient={PATIENT}" in search.request.url
    assert "_count=50" in search.request.url and "_sort=-date" in search.request.url
    assert search.request.headers["Authorization"] == "Bearer t"


def test_explain_says_when_the_procedures_were_not_read():
    """No prefetch for them and no FHIR server: the reason is still read, and the trace says
    what could not be checked."""
    prefetch = {"genomicResults": bundle(), "activeMedications": bundle(), "patient": aged(15)}
    trace = explain(med_order(APAP_CODEINE), prefetch)
    assert "recentProcedures not prefetched and no fhirServer: not used" in trace
    assert (
        "codeine-tonsillectomy-under-18 not applied: no tonsillectomy or adenoidectomy in the "
        "order's reasons; not checked in the patient's Procedures: not read" in trace
    )


# -- prescription opioid cough and cold medicines (FDA 2018) ---------------------------------


@pytest.mark.parametrize(
    ("product", "rule"),
    [
        (PROMETHAZINE_CODEINE, "codeine-cough-cold-under-18"),
        (CHLORPHENIRAMINE_HYDROCODONE, "hydrocodone-cough-cold-under-18"),
        (HOMATROPINE_HYDROCODONE, "hydrocodone-cough-cold-under-18"),
    ],
)
def test_an_opioid_cough_and_cold_medicine_under_18_gets_a_warning(call, product, rule):
    [card] = ask(call, med_order(product), aged(15))
    assert topics([card]) == {rule: "warning"}
    assert "adults only" in card["summary"]
    assert "(2018-01-11)" in card["detail"] and "cough and cold" in card["detail"]
    assert ask(call, med_order(product), aged(18)) == []  # an adult: none


def test_a_hydrocodone_pain_medicine_is_not_a_cough_medicine(call):
    assert ask(call, med_order(APAP_HYDROCODONE), aged(15)) == []


@pytest.mark.parametrize(
    "order",
    [
        {"text": "Promethazine with codeine oral syrup"},
        {"text": "Codeine-guaifenesin liquid 10 mL"},
        {"text": "codeine 15 mg tablet", "sig": "1 tablet at night for cough"},
    ],
)
def test_a_cough_medicine_named_only_in_text_counts(call, order):
    res = med_order(None)
    res["medicationCodeableConcept"] = {"text": order["text"]}
    if "sig" in order:
        res["dosageInstruction"] = [{"text": order["sig"]}]
    assert topics(ask(call, res, aged(16))) == {"codeine-cough-cold-under-18": "warning"}


def test_a_child_ordered_a_codeine_cough_medicine_gets_both_cards(call):
    """Each rule is its own card: the under-12 contraindication and the adults-only limit."""
    assert topics(ask(call, med_order(PROMETHAZINE_CODEINE), aged(9))) == {
        "codeine-under-12": "critical",
        "codeine-cough-cold-under-18": "warning",
    }


def test_a_cough_medicine_for_someone_who_may_be_17_or_18_asks_to_confirm(call):
    [card] = ask(call, med_order(CHLORPHENIRAMINE_HYDROCODONE), born(str(TODAY.year - 18)))
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Hydrocodone cough and cold medicine: the patient may be")


# -- dihydrocodeine ---------------------------------------------------------------------------


def test_dihydrocodeine_has_codeines_age_rules(call):
    assert topics(ask(call, med_order(APAP_CAFFEINE_DHC), aged(7))) == {
        "dihydrocodeine-under-12": "critical"
    }
    order = with_reason(APAP_CAFFEINE_DHC, reasonCode=[{"text": "post T&A"}])
    assert topics(ask(call, order, aged(15))) == {
        "dihydrocodeine-tonsillectomy-under-18": "critical"
    }
    assert ask(call, med_order(APAP_CAFFEINE_DHC), aged(30)) == []


# -- breastfeeding (FDA 2017) ---------------------------------------------------------------


@pytest.mark.parametrize(("product", "drug"), [(APAP_CODEINE, "codeine"), (TRAMADOL, "tramadol")])
def test_a_breastfeeding_status_gives_a_not_recommended_warning(call, product, drug):
    status = breastfeeding("LA29252-6", days_ago(20))
    [card] = ask(call, med_order(product), aged(30), statuses=[status])
    assert topics([card]) == {f"{drug}-breastfeeding": "warning"}
    assert "not recommended while breastfeeding" in card["summary"]
    assert days_ago(20) in card["detail"]


@pytest.mark.parametrize(
    "statuses",
    [
        [breastfeeding("LA29253-4", days_ago(5))],  # not breastfeeding
        # the latest says no
        [
            breastfeeding("LA29252-6", days_ago(90), id="old"),
            breastfeeding("LA29253-4", days_ago(5), id="new"),
        ],
        [breastfeeding("LA29252-6", days_ago(900))],  # more than two years ago
        [breastfeeding("LA29252-6", days_ago(5), status="entered-in-error")],
        [breastfeeding("LA29252-6", days_ago(5), subject={"reference": "Patient/other"})],
    ],
    ids=["no", "latest-no", "old", "entered-in-error", "another-patient"],
)
def test_breastfeeding_statuses_that_do_not_count(call, statuses):
    assert ask(call, med_order(APAP_CODEINE), aged(30), statuses=statuses) == []


def test_an_unknown_latest_status_does_not_hide_an_earlier_yes(call):
    statuses = [
        breastfeeding("LA29252-6", days_ago(60), id="yes"),
        breastfeeding("LA4489-6", days_ago(2), id="unknown"),
    ]
    assert topics(ask(call, med_order(APAP_CODEINE), aged(30), statuses=statuses)) == {
        "codeine-breastfeeding": "warning"
    }


@pytest.mark.parametrize(
    "code",
    [
        concept(SNOMED, "413712001", "Breastfeeding (mother)"),
        concept(ICD10CM, "Z39.1"),
        concept(ICD10CM, "Z391"),
    ],
)
def test_a_lactation_condition_counts(call, code):
    cards = ask(call, med_order(TRAMADOL), aged(28), conditions=[condition(code)], statuses=[])
    assert topics(cards) == {"tramadol-breastfeeding": "warning"}


def test_a_resolved_or_refuted_lactation_condition_does_not_count(call):
    code = concept(SNOMED, "413712001")
    resolved = condition(code, "resolved")
    refuted = condition(
        code,
        verificationStatus=concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted"
        ),
    )
    for item in (resolved, refuted):
        assert ask(call, med_order(TRAMADOL), aged(28), conditions=[item], statuses=[]) == []


@responses.activate
def test_breastfeeding_status_is_read_from_the_fhir_server(call):
    responses.get(
        re.compile(re.escape(FHIR) + r"/Observation\?.*code=http.*63895-7.*"),
        json=bundle(breastfeeding("LA29252-6", days_ago(3))),
    )
    responses.get(
        re.compile(re.escape(FHIR) + r"/Observation\?.*"), json=bundle(genotype_obs("*1/*1"))
    )
    responses.get(re.compile(re.escape(FHIR) + r"/MedicationRequest\?.*"), json=bundle())
    responses.get(re.compile(re.escape(FHIR) + r"/Condition\?.*"), json=bundle())
    responses.get(re.compile(re.escape(FHIR) + r"/Procedure\?.*"), json=bundle())
    responses.get(f"{FHIR}/Patient/{PATIENT}", json=aged(31))
    body = hook_request("order-select", [med_order(APAP_CODEINE)], fhir_server=FHIR, token="t")
    status, answer = call(body)
    assert status == 200
    assert topics(answer["cards"]) == {"codeine-breastfeeding": "warning"}
    [search] = [c for c in responses.calls if "63895-7" in c.request.url]
    assert "_count=10" in search.request.url and "_sort=-date" in search.request.url
    [conditions] = [c for c in responses.calls if "/Condition?" in c.request.url]
    assert "clinical-status=active,recurrence,relapse" in conditions.request.url


# -- 12 to 18 with obesity, obstructive sleep apnoea or severe lung disease ---------------------


@pytest.mark.parametrize(
    ("code", "named"),
    [
        (concept(ICD10CM, "E66.9", "Obesity, unspecified"), "obesity"),
        (concept(ICD10CM, "E6601"), "obesity"),  # without its dot
        (concept(ICD10CM, "Z68.54"), "obesity"),  # paediatric BMI, 95th percentile or more
        (concept(SNOMED, "414916001"), "obesity"),
        (concept(ICD10CM, "G47.33"), "obstructive sleep apnoea"),
        (concept(SNOMED, "78275009"), "obstructive sleep apnoea"),
        (concept(ICD10CM, "E84.0"), "severe lung disease"),  # cystic fibrosis
        (concept(ICD10CM, "J45.50"), "severe lung disease"),  # severe persistent asthma
        ({"text": "Obstructive sleep apnoea"}, "obstructive sleep apnoea"),
    ],
)
def test_an_adolescent_with_a_breathing_risk_factor_gets_a_warning(call, code, named):
    cards = ask(call, med_order(APAP_CODEINE), aged(14), conditions=[condition(code)], statuses=[])
    [card] = cards
    assert topics(cards) == {"codeine-12-to-18-breathing-risk": "warning"}
    assert f"**This patient:** age 14; {named}" in card["detail"]


@pytest.mark.parametrize(
    "code",
    [
        concept(ICD10CM, "E66.3", "Overweight"),
        concept(ICD10CM, "E66.3", "Overweight and obesity"),  # excluded: words do not override
        concept(ICD10CM, "Z68.53"),  # 85th to 95th percentile: overweight
        concept(ICD10CM, "J45.20", "Mild intermittent asthma"),
        concept(SNOMED, "238131007", "Overweight"),
        {"text": "not obese"},
    ],
)
def test_conditions_that_are_not_fdas_risk_factors_do_not_count(call, code):
    assert (
        ask(call, med_order(APAP_CODEINE), aged(14), conditions=[condition(code)], statuses=[])
        == []
    )


def test_a_13_year_old_without_risk_conditions_gets_no_card(call):
    assert ask(call, med_order(APAP_CODEINE), aged(13), conditions=[], statuses=[]) == []


@pytest.mark.parametrize("clinical", ["resolved", "inactive", "remission"])
def test_a_condition_that_is_over_does_not_count(call, clinical):
    item = condition(concept(ICD10CM, "E66.9"), clinical)
    assert ask(call, med_order(TRAMADOL), aged(15), conditions=[item], statuses=[]) == []


def test_a_refuted_or_erroneous_condition_does_not_count_and_an_unconfirmed_one_asks(call):
    def verified(code: str) -> dict[str, Any]:
        status = concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", code)
        return condition(concept(ICD10CM, "G47.33"), verificationStatus=status)

    for code in ("refuted", "entered-in-error"):
        assert (
            ask(call, med_order(TRAMADOL), aged(15), conditions=[verified(code)], statuses=[]) == []
        )
    [card] = ask(
        call, med_order(TRAMADOL), aged(15), conditions=[verified("provisional")], statuses=[]
    )
    assert card["indicator"] == "warning" and "provisional" in card["detail"]


def test_the_risk_rule_is_for_12_to_18_only(call):
    obese = [condition(concept(ICD10CM, "E66.9"))]
    assert ask(call, med_order(APAP_CODEINE), aged(25), conditions=obese, statuses=[]) == []
    # under 12: the contraindication, not the 12-18 warning
    assert topics(ask(call, med_order(APAP_CODEINE), aged(10), conditions=obese, statuses=[])) == {
        "codeine-under-12": "critical"
    }


def test_a_risk_factor_as_the_orders_reason_counts(call):
    order = with_reason(TRAMADOL, reasonCode=[concept(ICD10CM, "G47.33")])
    assert topics(ask(call, order, aged(16))) == {"tramadol-12-to-18-breathing-risk": "warning"}


def test_every_rule_is_its_own_card(call):
    """A 15-year-old with obesity, three days after tonsillectomy, breastfeeding: three cards."""
    cards = ask(
        call,
        med_order(APAP_CODEINE),
        aged(15),
        procedures=[procedure(TA, days_ago(3))],
        conditions=[condition(concept(ICD10CM, "E66.9"))],
        statuses=[breastfeeding("LA29252-6", days_ago(1))],
    )
    assert topics(cards) == {
        "codeine-tonsillectomy-under-18": "critical",
        "codeine-12-to-18-breathing-risk": "warning",
        "codeine-breastfeeding": "warning",
    }
    assert cards[0]["indicator"] == "critical"


def test_explain_says_when_the_conditions_were_not_read():
    prefetch = {"genomicResults": bundle(), "activeMedications": bundle(), "patient": aged(15)}
    trace = explain(med_order(APAP_CODEINE), prefetch)
    assert (
        "codeine-12-to-18-breathing-risk not applied: no obesity, obstructive sleep apnoea or "
        "severe lung disease in the order's reasons; not checked in the patient's Conditions: "
        "not read" in trace
    )
    assert (
        "codeine-breastfeeding not applied: no breastfeeding in the order's reasons; not checked "
        "in the patient's Conditions, the patient's status Observations: not read" in trace
    )


def test_explain_says_where_a_finding_was_looked_for():
    prefetch = {
        "genomicResults": bundle(),
        "activeMedications": bundle(),
        "patient": aged(15),
        "recentProcedures": bundle(procedure(TA, days_ago(300))),
        "activeConditions": bundle(),
        "breastfeedingStatus": bundle(),
    }
    trace = explain(med_order(APAP_CODEINE), prefetch)
    assert "Procedure/proc-1 (tonsillectomy) of '" in trace and "more than 30 days ago" in trace
    assert (
        "codeine-tonsillectomy-under-18 not applied: no tonsillectomy or adenoidectomy in the "
        "order's reasons or the patient's Procedures" in trace
    )


def test_explain_says_when_there_is_no_patient():
    prefetch = {"genomicResults": bundle(), "activeMedications": bundle(), "patient": None}
    trace = explain(med_order(APAP_CODEINE), prefetch)
    assert "no Patient resource: the age is unknown, age rules not applied" in trace
    assert "codeine: codeine-under-12 not applied: the patient's age is unknown" in trace


def test_only_what_a_rule_needs_is_read(call):
    """Celecoxib has no label rule: no Patient, Procedure, Condition or status read."""
    from cds_service.clinical import label_rules
    from cds_service.clinical.medications import IdentifiedDrug
    from cds_service.fhir.hook_context import DraftOrder
    from cds_service.knowledge.loader import Knowledge
    from cds_service.settings import default_knowledge_dir

    knowledge = Knowledge(default_knowledge_dir())

    def needs(product: tuple[str, str], drug: str) -> tuple[bool, frozenset[str]]:
        d = IdentifiedDrug(drug, DraftOrder(med_order(product)), "RxNorm", product[1])
        return label_rules.chart_needs([d], knowledge)

    assert needs(APAP_CODEINE, "codeine") == (
        True,
        frozenset({"procedures", "conditions", "observations"}),
    )
    assert needs(APAP_HYDROCODONE, "hydrocodone") == (False, frozenset())
    assert needs(CHLORPHENIRAMINE_HYDROCODONE, "hydrocodone") == (True, frozenset())
