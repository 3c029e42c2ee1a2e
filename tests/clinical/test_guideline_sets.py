"""A site's guideline sets (PGX_CDS_GUIDELINES, the site file's 'guidelines'): the first set
with advice for the result decides the card, which names it; another listed set that advises
differently gets one line. DPWG 2022 for codeine and tramadol (oxycodone: no action), and
codeine's DPWG dose limit in ultrarapid metabolizers."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from builders import (
    APAP_CODEINE,
    NO_CHART,
    OXYCODONE,
    PATIENT,
    TRAMADOL,
    bundle,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
)

from cds_service.settings import Settings
from cds_service.web.app import create_app

UM, NM, IM, PM = (
    "Ultrarapid Metabolizer",
    "Normal Metabolizer",
    "Intermediate Metabolizer",
    "Poor Metabolizer",
)
TODAY = date(2026, 12, 1)
SERVICE_FOR_HOOK = {"order-select": "pgx-order-select"}
ADULT = {"resourceType": "Patient", "id": PATIENT, "birthDate": "1980-05-01"}


@pytest.fixture(autouse=True)
def fixed_day(monkeypatch):
    monkeypatch.setattr("cds_service.clinical.order_details.current_date", lambda: TODAY)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """One test client per guideline choice (the knowledge is loaded once per choice)."""
    made: dict[str, Any] = {}

    def get(guidelines: str, site: dict[str, Any] | None = None):
        key = guidelines + json.dumps(site or {}, sort_keys=True)
        if key not in made:
            folder = tmp_path_factory.mktemp("site")
            extra: dict[str, Any] = {}
            if site is not None:
                path = folder / "site.json"
                path.write_text(json.dumps(site))
                extra["site_config"] = path
            settings = Settings(
                database_url=f"sqlite:///{folder / 'feedback.sqlite3'}",
                fhir_timeout=1.0,
                guidelines=guidelines,
                **extra,
            )
            made[key] = create_app(settings).test_client()
        client = made[key]

        def call(body: dict[str, Any]) -> dict[str, Any]:
            response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[body['hook']]}", json=body)
            assert response.status_code == 200, response.get_json()
            return response.get_json()

        return call

    return get


def order(
    concept: dict[str, Any] | tuple[str, str], sig: str = "1 tablet every 6 hours"
) -> dict[str, Any]:
    res = med_order(concept if isinstance(concept, tuple) else None)
    if isinstance(concept, dict):
        res["medicationCodeableConcept"] = concept
    res["dosageInstruction"] = [{"text": sig}]
    return res


def ask(call, orders, phenotype: str, patient: dict[str, Any] | None = ADULT) -> list[dict]:
    prefetch = {"genomicResults": bundle(phenotype_obs(phenotype)), **NO_CHART}
    prefetch["patient"] = patient
    return call(hook_request("order-select", orders, prefetch=prefetch))["cards"]


def coded(system: str, code: str) -> dict[str, Any]:
    """A medication concept with one code and nothing else (no RxNorm, no text)."""
    return {"coding": [{"system": system, "code": code}]}


ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"

# (product, drug, phenotype, DPWG card's indicator, CPIC card's indicator); None: no card
PAIN = [
    (APAP_CODEINE, "codeine", UM, "critical", "critical"),  # 30 mg every 6 h: above 20 mg
    (APAP_CODEINE, "codeine", NM, None, None),
    (APAP_CODEINE, "codeine", IM, "info", "info"),
    (APAP_CODEINE, "codeine", PM, "warning", "critical"),
    (TRAMADOL, "tramadol", UM, "warning", "critical"),
    (TRAMADOL, "tramadol", NM, None, None),
    (TRAMADOL, "tramadol", IM, "info", "info"),
    (TRAMADOL, "tramadol", PM, "info", "critical"),
]


@pytest.mark.parametrize(("product", "drug", "phenotype", "dpwg", "cpic"), PAIN)
def test_dpwg_card_under_dpwg_and_cpic_card_under_cpic(
    services, product, drug, phenotype, dpwg, cpic
):
    for guidelines, expected, label, pmid in (
        ("dpwg", dpwg, "DPWG 2022", "34267337"),
        ("cpic", cpic, "CPIC 2021", "33387367"),
    ):
        cards = ask(services(guidelines), [order(product)], phenotype)
        if expected is None:
            assert cards == [], guidelines
            continue
        [card] = cards
        assert card["indicator"] == expected, guidelines
        assert card["source"]["label"].startswith(label)
        assert f"PMID {pmid}" in card["detail"]
        assert "advises differently" not in card["detail"]  # one set chosen: nothing to compare


@pytest.mark.parametrize(
    ("product", "phenotype", "other"),
    [
        (APAP_CODEINE, PM, "CPIC 2021"),
        (TRAMADOL, UM, "CPIC 2021"),
        (TRAMADOL, PM, "CPIC 2021"),
    ],
)
def test_guidelines_differ_line_names_the_other_set(services, product, phenotype, other):
    [card] = ask(services("dpwg,cpic"), [order(product)], phenotype)
    assert card["source"]["label"].startswith("DPWG 2022")
    [line] = [x for x in card["detail"].splitlines() if "advises differently" in x]
    assert line.startswith(f"**{other} advises differently:** avoid")
    [card] = ask(services("cpic,dpwg"), [order(product)], phenotype)
    assert card["source"]["label"].startswith("CPIC 2021")
    [line] = [x for x in card["detail"].splitlines() if "advises differently" in x]
    assert line.startswith("**DPWG 2022 advises differently:**")


@pytest.mark.parametrize("product", [APAP_CODEINE, TRAMADOL])
def test_same_advice_gets_no_differs_line(services, product):
    """Both sets say 'be alert to a reduced effect' for intermediate metabolizers."""
    [card] = ask(services("dpwg,cpic"), [order(product)], IM)
    assert card["source"]["label"].startswith("DPWG 2022")
    assert "advises differently" not in card["detail"]


def test_oxycodone_dpwg_no_action_is_explained(services):
    assert ask(services("dpwg"), [order(OXYCODONE)], PM) == []


CO_CODAMOL_8 = coded(SNOMED, "42010211000001106")  # Co-codamol 8mg/500mg tablets (dm+d VMP)


@pytest.mark.parametrize(
    ("sig", "patient", "indicator"),
    [
        ("2 tablets every 6 hours", ADULT, "info"),  # 16 mg every 6 h: within 20 mg
        ("2 tablets every 4 hours", ADULT, "critical"),  # 96 mg a day: 24 mg per 6 h
        ("2 tablets every 6 hours", {**ADULT, "birthDate": "2012-03-01"}, "critical"),  # 14
        ("2 tablets every 6 hours", {**ADULT, "birthDate": "2010"}, "critical"),  # 15 or 16
        ("2 tablets every 6 hours", None, "critical"),  # age unknown
        ("take as directed", ADULT, "critical"),  # dose not read
    ],
)
def test_codeine_ultrarapid_dpwg_dose_limit(services, sig, patient, indicator):
    """DPWG contraindicates codeine in ultrarapid metabolizers above 20 mg every 6 hours
    (adults; 10 mg aged 12 or over): within it, a caution naming the risk factors; an age or
    dose the service cannot read keeps the contraindication."""
    [card] = ask(services("dpwg"), [order(CO_CODAMOL_8, sig)], UM, patient)
    assert card["indicator"] == indicator
    assert card["source"]["label"].startswith("DPWG 2022")
    if indicator == "info":
        assert "CYP3A4 inhibitor" in card["detail"] and "within" in card["detail"]


def test_within_dose_limit_card_says_cpic_differs(services):
    [card] = ask(services("dpwg,cpic"), [order(CO_CODAMOL_8, "2 tablets every 6 hours")], UM)
    assert card["indicator"] == "info"
    assert "**CPIC 2021 advises differently:** avoid" in card["detail"]
    [card] = ask(services("cpic,dpwg"), [order(CO_CODAMOL_8, "2 tablets every 6 hours")], UM)
    assert card["indicator"] == "critical"
    assert "**DPWG 2022 advises differently:** avoid, above 20 mg every 6 hours" in card["detail"]


@pytest.mark.parametrize(
    ("concept", "drug"),
    [
        (coded(ATC, "N02AJ06"), "codeine"),  # codeine and paracetamol
        (coded(ATC, "n02aj 06"), "codeine"),  # written loosely
        (coded("urn:oid:2.16.840.1.113883.6.73", "R05DA04"), "codeine"),
        (coded(ATC, "N02AX02"), "tramadol"),
        (coded(ATC, "N02AJ13"), "tramadol"),  # tramadol and paracetamol
        (coded(SNOMED, "42009811000001101"), "codeine"),  # Co-codamol 30mg/500mg tablets
        (coded(SNOMED, "322341003"), "codeine"),  # SNOMED CT clinical drug, same product
        (coded(SNOMED, "42017811000001106"), "tramadol"),  # Tramadol 50mg capsules
    ],
)
@pytest.mark.parametrize("guidelines", ["cpic", "dpwg"])
def test_orders_identified_from_atc_and_snomed_alone(services, concept, drug, guidelines):
    [card] = ask(services(guidelines), [order(concept)], PM)
    assert drug in card["summary"].lower()
    assert card["source"]["label"].startswith("DPWG 2022" if guidelines == "dpwg" else "CPIC 2021")


def test_an_unknown_atc_code_identifies_nothing(services):
    assert ask(services("cpic"), [order(coded(ATC, "N02BE01"))], PM) == []  # paracetamol


def test_site_file_chooses_the_guidelines_and_adds_drug_codes(services):
    site = {
        "guidelines": ["dpwg"],
        "drug_codes": {
            "urn:example:local-formulary|TRAM-50": {
                "name": "Tramadol 50 mg capsule (local)",
                "ingredients": ["tramadol"],
                "strengths": {"tramadol": 50},
            }
        },
    }
    local = coded("urn:example:local-formulary", "TRAM-50")
    [card] = ask(services("cpic", site), [order(local)], UM)  # the file wins over the setting
    assert card["source"]["label"].startswith("DPWG 2022")
    assert card["indicator"] == "warning"


@pytest.mark.parametrize("value", ["", "fda", "cpic,cpic", "dpwg;cpic"])
def test_a_wrong_guideline_setting_is_refused(value):
    with pytest.raises(ValueError, match="cpic"):
        Settings(guidelines=value)


def test_the_setting_reads_order_and_case():
    assert Settings(guidelines=" DPWG , cpic").guideline_list == ("dpwg", "cpic")
    assert Settings().guideline_list == ("cpic",)


def test_explain_names_the_deciding_guideline(tmp_path: Path, capsys, monkeypatch):
    from cds_service.cli import main

    body = hook_request(
        "order-select",
        [order(OXYCODONE), order(APAP_CODEINE)],
        prefetch={"genomicResults": bundle(phenotype_obs(PM)), "patient": ADULT, **NO_CHART},
    )
    body["context"]["draftOrders"]["entry"][1]["resource"]["id"] = "order-2"
    body["context"]["selections"] = ["MedicationRequest/order-1", "MedicationRequest/order-2"]
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    monkeypatch.setenv("PGX_CDS_GUIDELINES", "dpwg,cpic")
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "codeine: DPWG 2022 decides (this site's guidelines, in order: dpwg, cpic" in out
    assert "codeine: CPIC 2021 would give codeine-cyp2d6-pm (avoid)" in out


# -- the other pain-relevant drugs DPWG covers ----------------------------------------------

AMITRIPTYLINE_10 = ("856783", "amitriptyline hydrochloride 10 MG Oral Tablet")
NORTRIPTYLINE_25 = coded(ATC, "N06AA10")  # nortriptyline, by ATC alone
VENLAFAXINE = ("313582", "venlafaxine 75 MG Oral Tablet")
CELECOXIB = ("205323", "celecoxib 200 MG Oral Capsule")


def daily(concept, tablets: float = 1) -> dict[str, Any]:
    res = order(concept)
    res["dosageInstruction"] = [
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": tablets, "unit": "tablet"}}],
        }
    ]
    return res


def test_amitriptyline_low_dose_dpwg_keeps_its_dose_advice(services):
    """CPIC's tricyclic advice is for depression doses (10 mg a day: a caution); DPWG's does
    not set pain doses apart: 70% of the ordered dose for a poor metabolizer."""
    [cpic] = ask(services("cpic"), [daily(AMITRIPTYLINE_10)], PM)
    assert cpic["indicator"] == "info" and "low dose" in cpic["summary"]
    [dpwg] = ask(services("dpwg"), [daily(AMITRIPTYLINE_10)], PM)
    assert dpwg["indicator"] == "warning"
    assert dpwg["source"]["label"].startswith("DPWG 2011 (TCA)")
    assert "70% of the usual dose" in dpwg["detail"] and "PMID 21412232" in dpwg["detail"]


@pytest.mark.parametrize(("phenotype", "pct"), [(IM, "60%"), (PM, "40%")])
def test_nortriptyline_dpwg_percentages(services, phenotype, pct):
    [card] = ask(services("dpwg"), [daily(NORTRIPTYLINE_25)], phenotype)
    assert card["source"]["label"].startswith("DPWG 2011 (TCA)")
    assert f"Use {pct} of the usual dose" in card["detail"]


def test_nortriptyline_ultrarapid_dose_rise_is_never_a_suggestion(services):
    [card] = ask(services("dpwg"), [daily(NORTRIPTYLINE_25)], UM)
    assert "1.7 times" in card["detail"]
    assert not any(
        a.get("type") == "create" for s in card.get("suggestions", []) for a in s["actions"]
    )


@pytest.mark.parametrize(("phenotype", "dpwg", "cpic"), [(IM, "warning", None), (UM, None, None)])
def test_venlafaxine_dpwg_2024(services, phenotype, dpwg, cpic):
    """DPWG 2024: avoid venlafaxine in intermediate metabolizers (CPIC: no recommendation);
    ultrarapid: no action (the pre-2024 'up to 150%' is gone)."""
    for guidelines, expected in (("dpwg", dpwg), ("cpic", cpic)):
        cards = ask(services(guidelines), [order(VENLAFAXINE)], phenotype)
        assert [c["indicator"] for c in cards] == ([expected] if expected else []), guidelines


def test_nsaids_are_not_dpwg_and_cpic_after_dpwg_still_advises(services):
    """DPWG has no NSAID guideline: dpwg alone gives no CYP2C9 card; dpwg,cpic falls back to
    CPIC 2020."""
    body = hook_request(
        "order-select",
        [daily(CELECOXIB)],
        prefetch={
            "genomicResults": bundle(phenotype_obs(PM, "CYP2C9")),
            "patient": ADULT,
            **NO_CHART,
        },
    )
    assert services("dpwg")(body)["cards"] == []
    [card] = services("dpwg,cpic")(body)["cards"]
    assert card["source"]["label"].startswith("CPIC 2020")


def test_a_set_without_a_recommendation_leaves_the_result_to_the_next(services):
    """CPIC 2023 makes no recommendation for venlafaxine in intermediate metabolizers (not a
    'no action'): under cpic,dpwg DPWG 2024's advice decides; under cpic alone, no card."""
    assert ask(services("cpic"), [order(VENLAFAXINE)], IM) == []
    [card] = ask(services("cpic,dpwg"), [order(VENLAFAXINE)], IM)
    assert card["source"]["label"].startswith("DPWG 2024")
    assert "**CPIC 2023 advises differently:** no recommendation for this result." in card["detail"]


def test_dpwg_no_action_decides_for_a_site_listing_it_first(services):
    """DPWG reviewed amitriptyline with CYP2C19 and advises no action: under dpwg,cpic no card
    for a CYP2C19 poor metabolizer (CPIC would say avoid); under cpic,dpwg CPIC's card."""
    body = hook_request(
        "order-select",
        [daily(AMITRIPTYLINE_10, 3)],
        prefetch={
            "genomicResults": bundle(phenotype_obs(PM, "CYP2C19")),
            "patient": ADULT,
            **NO_CHART,
        },
    )
    assert services("dpwg,cpic")(body)["cards"] == []
    [card] = services("cpic,dpwg")(body)["cards"]
    assert card["source"]["label"].startswith("CPIC 2016")
    assert "**DPWG 2011 (TCA) advises differently:** DPWG 2011 (TCA) reviewed" in card["detail"]


@pytest.mark.parametrize("guidelines", ["cpic", "dpwg"])
def test_an_inhibitor_recorded_by_atc_code_converts_the_phenotype(services, guidelines):
    """Paroxetine on the medication list as ATC N06AB05 only (a strong CYP2D6 inhibitor): a
    normal metabolizer reads as poor for tramadol, under either set."""
    statement = {
        "resourceType": "MedicationStatement",
        "id": "stmt-1",
        "status": "active",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "medicationCodeableConcept": coded(ATC, "N06AB05"),
    }
    prefetch = {
        "genomicResults": bundle(phenotype_obs(NM)),
        "medicationStatements": bundle(statement),
        "patient": ADULT,
        **NO_CHART,
    }
    body = hook_request("order-select", [order(TRAMADOL)], prefetch=prefetch)
    [card] = services(guidelines)(body)["cards"]
    assert "paroxetine" in card["detail"].lower()
    assert card["indicator"] == ("critical" if guidelines == "cpic" else "info")


PHENYTOIN = ("855671", "phenytoin sodium 100 MG Extended Release Oral Capsule")
HLA_B_CARRIER = genotype_obs("HLA-B*15:02:01+HLA-B*07:02:01", "HLA-B", obs_id="hla")


@pytest.mark.parametrize("guidelines", ["dpwg", "dpwg,cpic", "cpic"])
def test_phenytoin_is_never_silent_for_want_of_dpwg_rows(services, guidelines):
    """DPWG advises on phenytoin (2024) but its rows are not carried yet
    (knowledge/guideline_gaps.json): under dpwg alone CPIC 2020's rows stand in, so an
    HLA-B*15:02 carrier still gets the critical card, naming the guideline it follows."""
    body = hook_request(
        "order-select",
        [order(PHENYTOIN, "1 capsule three times daily")],
        prefetch={"genomicResults": bundle(HLA_B_CARRIER), "patient": ADULT, **NO_CHART},
    )
    [card] = services(guidelines)(body)["cards"]
    assert card["indicator"] == "critical"
    assert card["source"]["label"].startswith("CPIC 2020")


def test_a_stand_in_is_only_for_the_sets_a_site_chose(knowledge):
    from cds_service.knowledge.loader import Knowledge

    dpwg = Knowledge(knowledge.directory, guidelines=("dpwg",))
    assert dpwg.stand_ins["phenytoin"][0] == "CPIC"
    assert dpwg.precedence_for("phenytoin") == ("DPWG", "CPIC", "FDA")
    assert dpwg.precedence_for("codeine") == ("DPWG", "FDA")  # DPWG's own rows: no stand-in
    assert knowledge.stand_ins == {}  # CPIC chosen: nothing stands in
