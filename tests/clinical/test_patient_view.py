"""Patient view: the chart opens and one card sums up the patient's PGx results for pain care
(issue 14). It must say, per drug, what a prescribing card would say, and nothing else."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import responses
from builders import (
    PATIENT,
    bundle,
    genotype_obs,
    med_order,
    phenotype_obs,
    with_results,
)

from cds_service.core.wording import escaped
from cds_service.settings import Settings
from cds_service.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
INDEX = json.loads((ROOT / "sandbox" / "patients" / "index.json").read_text())
REQUESTS = ROOT / "sandbox" / "requests"
FHIR = "https://ehr.example.org/fhir"
SEARCH = re.compile(re.escape(FHIR) + r"/Observation\?.*")
MEDS = re.compile(re.escape(FHIR) + r"/MedicationRequest\?.*")
PAROXETINE = ("314199", "Paroxetine 20 MG Oral Tablet")
NSAID_GUIDELINE = "https://www.clinpgx.org/guideline/PA166251464"
OPIOID_GUIDELINE = "https://www.clinpgx.org/guideline/PA166251454"


def view_request(
    prefetch: dict[str, Any] | None = None,
    *,
    fhir_server: str | None = None,
    token: str | None = None,
    patient: str = PATIENT,
) -> dict[str, Any]:
    """A patient-view call as an EHR sends it when the chart opens: no orders."""
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": patient},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    if fhir_server:
        body["fhirServer"] = fhir_server
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer"}
    return body


def view(call, *observations: dict[str, Any], meds: list[dict[str, Any]] | None = None):
    prefetch = {
        **with_results(*observations),
        "activeMedications": bundle(*(meds or [])),
        "patient": None,
    }
    status, answer = call(view_request(prefetch))
    assert status == 200, answer
    return answer["cards"]


LABELS = {"result", "note", "phenoconversion"}  # the rows about the result, not a drug


def rows(detail: str) -> dict[str, str]:
    """The drug rows of the card's gene tables: drug -> advice cell."""
    out = {}
    for line in detail.splitlines():
        cells = _cells(line)
        if len(cells) == 2 and re.fullmatch(r"[a-z]+", cells[0]) and cells[0] not in LABELS:
            out[cells[0]] = cells[1]
    return out


def _cells(line: str) -> list[str]:
    if not line.startswith("|"):
        return []
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


# -- the done-when -------------------------------------------------------------------


def test_cyp2d6_poor_and_cyp2c9_star3_star3_give_one_card_naming_both(call, knowledge):
    cards = view(
        call,
        phenotype_obs("Poor Metabolizer", "CYP2D6", obs_id="d6"),
        genotype_obs("*3/*3", "CYP2C9", obs_id="c9"),
    )
    [card] = cards
    assert card["indicator"] == "info"
    uuid.UUID(card["uuid"])
    summary = card["summary"]
    assert len(summary) < 140
    assert summary.index("CYP2D6 poor metabolizer") < summary.index("CYP2C9 poor metabolizer")
    assert "(AS 0)" in summary  # CYP2C9's advice goes by activity score
    assert summary.endswith("— 24 pain drugs affected")
    advice = rows(card["detail"])
    assert advice["codeine"].startswith("**Avoid** (CPIC, strong). Do not prescribe codeine.")
    assert advice["celecoxib"].startswith("**Adjust dose** (CPIC, moderate). Start celecoxib at")
    assert advice["meloxicam"].startswith("**Consider an alternative**")
    assert "`*3/*3`" in card["detail"] and "activity score 0" in card["detail"]
    urls = {link["url"] for link in card["links"]}
    assert {OPIOID_GUIDELINE, NSAID_GUIDELINE} <= urls
    assert all(link["url"].startswith("https://") for link in card["links"])
    assert all(link["type"] == "absolute" for link in card["links"])
    celecoxib_link = next(lk for lk in card["links"] if lk["url"] == NSAID_GUIDELINE)
    assert "celecoxib" in celecoxib_link["label"]
    # every table row of the detail has its two cells (no stray pipes)
    for line in card["detail"].splitlines():
        if line.startswith("|"):
            assert len(_cells(line)) == 2, line


@pytest.mark.parametrize("genomic", [None, bundle()])
def test_no_results_no_card(call, genomic):
    prefetch = {"genomicResults": genomic, "activeMedications": None, "patient": None}
    assert call(view_request(prefetch)) == (200, {"cards": []})


def test_a_site_can_switch_on_the_no_results_card(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", patient_view_no_results_card=True
    )
    with create_app(settings).test_client() as client:
        response = client.post(
            "/cds-services/pgx-patient-view",
            json=view_request({"genomicResults": bundle(), "activeMedications": None}),
        )
    [card] = response.get_json()["cards"]
    assert card["indicator"] == "info"
    assert card["summary"] == "PGx for pain: no pharmacogenomic results on file"
    assert "CYP2D6 (" in card["detail"] and "codeine" in card["detail"]
    assert card["links"] and all(lk["url"].startswith("https://") for lk in card["links"])


def test_the_setting_is_off_by_default():
    assert Settings().patient_view_no_results_card is False


@responses.activate
def test_without_prefetch_the_fhir_server_is_read_with_the_token(call):
    responses.get(
        SEARCH,
        json=bundle(
            phenotype_obs("Poor Metabolizer", "CYP2D6", obs_id="d6"),
            genotype_obs("*3/*3", "CYP2C9", obs_id="c9"),
        ),
    )
    responses.get(MEDS, json=bundle())
    status, answer = call(view_request(fhir_server=FHIR, token="secret-token"))
    assert status == 200
    [card] = answer["cards"]
    assert "CYP2D6" in card["summary"] and "CYP2C9" in card["summary"]
    # (the label rules' breastfeeding-status search is an Observation search too)
    [search] = [
        c
        for c in responses.calls
        if "/Observation?" in c.request.url and "84413-4" in c.request.url
    ]
    assert search.request.headers["Authorization"] == "Bearer secret-token"
    assert f"patient={PATIENT}" in search.request.url
    # the active medications were read too (phenoconversion needs them)
    assert any("/MedicationRequest?" in c.request.url for c in responses.calls)


@responses.activate
def test_fhir_server_down_without_prefetch_is_a_412(call):
    responses.get(SEARCH, status=503)
    status, answer = call(view_request(fhir_server=FHIR, token="t"))
    assert status == 412
    assert "genomicResults" in json.dumps(answer)


def test_no_prefetch_and_no_fhir_server_is_a_412(call):
    status, answer = call(view_request())
    assert status == 412 and "fhirServer" in answer["error"]


def test_wrong_hook_for_the_service_is_a_400(client):
    body = view_request({"genomicResults": None})
    body["hook"] = "order-select"
    response = client.post("/cds-services/pgx-patient-view", json=body)
    assert response.status_code == 400 and "patient-view" in response.get_json()["error"]


# -- what the card says ----------------------------------------------------------------------


def test_normal_results_are_one_line_not_hidden(call):
    [card] = view(
        call,
        genotype_obs("*1/*1", "CYP2D6", obs_id="d6"),
        genotype_obs("*3/*3", "CYP2C9", obs_id="c9"),
    )
    assert "CYP2D6" not in card["summary"]
    assert "codeine" not in rows(card["detail"])
    [line] = [ln for ln in card["detail"].splitlines() if ln.startswith("**No change in advice:**")]
    assert "CYP2D6 normal metabolizer `*1/*1`" in line and "codeine" in line


def test_all_normal_results_say_so_in_an_info_card(call):
    [card] = view(call, genotype_obs("*1/*1", "CYP2D6", obs_id="d6"))
    assert card["summary"] == "PGx for pain, no change in advice: CYP2D6 normal metabolizer"
    assert rows(card["detail"]) == {}


def test_indeterminate_results_only_give_no_card(call):
    assert view(call, phenotype_obs("Indeterminate", "CYP2D6", as_text=True)) == []


def test_phenoconversion_is_shown_with_the_advice_by_genotype(call):
    paroxetine = med_order(PAROXETINE, order_id="parox-1")
    paroxetine["status"] = "active"
    [card] = view(call, genotype_obs("*1/*1", "CYP2D6", obs_id="d6"), meds=[paroxetine])
    # the genetic phenotype beside the converted one
    assert (
        "CYP2D6 normal metabolizer by genotype, poor metabolizer while taking paroxetine"
        in card["summary"]
    )
    [row] = [ln for ln in card["detail"].splitlines() if ln.startswith("| phenoconversion")]
    assert "functionally **poor metabolizer** while taking paroxetine" in row
    assert rows(card["detail"])["codeine"].endswith("By genotype alone: label dosing.")


def test_stopped_inhibitor_does_not_phenoconvert(call):
    paroxetine = med_order(PAROXETINE, order_id="parox-1")
    paroxetine["status"] = "stopped"
    [card] = view(call, genotype_obs("*1/*1", "CYP2D6", obs_id="d6"), meds=[paroxetine])
    assert "paroxetine" not in card["summary"] + card["detail"]


def test_reinterpreted_result_shows_the_labs_outdated_label(call):
    label = phenotype_obs("Normal Metabolizer", "CYP2D6", obs_id="label", date="2017-05-02")
    label["valueCodeableConcept"] = {
        "coding": [
            {"system": "http://loinc.org", "code": "LA10316-0", "display": "Extensive metabolizer"}
        ]
    }
    [card] = view(call, genotype_obs("*1/*4", "CYP2D6", date="2017-05-02"), label)
    assert "CYP2D6 intermediate metabolizer" in card["summary"]
    assert "| lab's label | Extensive metabolizer (outdated; re-interpreted) |" in card["detail"]
    assert "pre-2019 wording" in card["detail"]


def test_a_result_spanning_rows_says_the_score_decides(call):
    [card] = view(call, phenotype_obs("Intermediate Metabolizer", "CYP2C9", obs_id="c9"))
    assert rows(card["detail"])["celecoxib"].startswith("**Advice depends on the activity score**")


def test_tricyclic_advice_mentions_pain_doses(call):
    [card] = view(call, phenotype_obs("Poor Metabolizer", "CYP2D6"))
    assert "neuropathic-pain doses" in rows(card["detail"])["amitriptyline"]


def test_long_summaries_are_shortened(call):
    [card] = view(
        call,
        phenotype_obs("Poor Metabolizer", "CYP2D6", obs_id="d6"),
        phenotype_obs("Ultrarapid Metabolizer", "CYP2C19", obs_id="c19"),
        genotype_obs("*3/*3", "CYP2C9", obs_id="c9"),
        genotype_obs("HLA-B*15:02:01/HLA-B*15:02:01", "HLA-B", obs_id="hla"),
    )
    assert len(card["summary"]) < 140
    assert "pain drugs affected" in card["summary"]


# -- one code path: the summary never contradicts a prescribing card -------------------------


def _prescribing_advice(summary: str, drug: str) -> str:
    """The advice a prescribing card's summary gives, in the patient view's words."""
    disagree = re.search(rf"verify before prescribing {drug} \(if [^:]+: (.+)\)$", summary)
    if disagree:  # results that disagree: the riskier reading's advice
        words = disagree.group(1)
        return words[:1].upper() + words[1:]
    own = re.match(rf"{re.escape(drug.capitalize())}: (higher exposure, watch [^:]+):", summary)
    if own:  # a row's own summary wording ("{Drug}: higher exposure, watch ...")
        return own.group(1)[:1].upper() + own.group(1)[1:]
    if summary.startswith(f"Avoid {drug}:"):
        return "Avoid"
    if summary.startswith(f"Consider an alternative to {drug}:"):
        return "Consider an alternative"
    if summary.startswith(f"Adjust {drug} dose:"):
        return "Adjust dose"
    if summary.startswith(f"{drug.capitalize()}: reduced or uncertain response possible"):
        return "Reduced or uncertain response possible"
    if summary.startswith(f"{drug.capitalize()}: advice depends on the activity score"):
        return "Advice depends on the activity score"
    if summary.startswith(f"{drug.capitalize()}: continue cautiously (taken over 3 months)"):
        return "Continue cautiously (taken over 3 months)"
    raise AssertionError(f"unknown prescribing summary: {summary}")


def _order(drug: str, rxcui: str | None) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": drug}
    if rxcui:
        concept["coding"] = [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxcui}
        ]
    return {
        "resourceType": "MedicationRequest",
        "id": "order-1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "medicationCodeableConcept": concept,
    }


@pytest.mark.parametrize("patient", [p["id"] for p in INDEX])
def test_patient_view_agrees_with_every_prescribing_card(call, knowledge, patient):
    view_body = json.loads((REQUESTS / f"patient-view-{patient}.json").read_text())
    status, answer = call(view_body)
    assert status == 200
    cards = answer["cards"]
    advice = rows(cards[0]["detail"]) if cards else {}
    rec_ids = {r.id for r in knowledge.recommendations}
    rules_listed = {
        line
        for line in (cards[0]["detail"].splitlines() if cards else [])
        if re.match(r"- [a-z]+: \*\*", line)
    }
    for drug in sorted(knowledge.covered_drugs):
        order = _order(drug, knowledge.drugs[drug].rxcui)
        body = {
            "hook": "order-select",
            "hookInstance": str(uuid.uuid4()),
            "context": {
                "userId": "Practitioner/example",
                "patientId": patient,
                "selections": ["MedicationRequest/order-1"],
                "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]},
            },
            "prefetch": view_body["prefetch"],
        }
        order["subject"]["reference"] = f"Patient/{patient}"
        status, prescribing = call(body)
        assert status == 200
        genetic = [c for c in prescribing["cards"] if c["source"]["topic"]["code"] in rec_ids]
        # label and pre-test cards: listed as their card says, in the rules beside the genotype
        ruled = [c for c in prescribing["cards"] if c["source"]["topic"]["code"] not in rec_ids]
        for card in ruled if cards else []:  # (no results on file: no patient-view card)
            line = f"- {drug}: **{escaped(card['summary'])}**"
            assert line in cards[0]["detail"], (patient, drug, card["summary"])
            rules_listed -= {r for r in rules_listed if r.startswith(line)}
        if not genetic:
            assert drug not in advice, (patient, drug, advice.get(drug))
            continue
        assert drug in advice, (patient, drug, [c["summary"] for c in genetic])
        for card in genetic:
            expected = _prescribing_advice(card["summary"], drug)
            assert advice[drug].startswith(f"**{expected}**"), (patient, drug, card["summary"])
    assert not rules_listed, (patient, rules_listed)  # nothing a prescribing card does not say
    if cards:
        assert (
            cards[0]["summary"]
            == next(p for p in INDEX if p["id"] == patient)["patient_view"]["summary"]
        )


# -- the same story as the prescribing cards (issue 22, item 8) -------------------------------

DULOXETINE = ("596926", "duloxetine 30 MG Delayed Release Oral Capsule")


def child(years: int) -> dict[str, Any]:
    from datetime import date

    return {"resourceType": "Patient", "id": PATIENT, "birthDate": f"{date.today().year - years}"}


def view_with(call, *observations, patient=None, meds=None):
    prefetch = {
        **with_results(*observations),
        "activeMedications": bundle(*(meds or [])),
        "patient": patient,
    }
    status, answer = call(view_request(prefetch))
    assert status == 200, answer
    return answer["cards"]


def test_a_childs_card_lists_codeine_and_tramadol_as_contraindicated_by_age(call):
    [card] = view_with(call, genotype_obs("*1/*1", obs_id="d6"), patient=child(7))
    assert card["summary"] == (
        "PGx for pain: codeine, dihydrocodeine, tramadol contraindicated (FDA label); "
        "no change by genotype: "
        "CYP2D6 normal metabolizer"
    )
    detail = card["detail"]
    assert "- codeine: **Codeine is contraindicated in children under 12 (FDA label)**" in detail
    assert "- tramadol: **Tramadol is contraindicated in children under 12 (FDA label)**" in (
        detail
    )
    [unchanged] = [ln for ln in detail.splitlines() if ln.startswith("**No change in advice:**")]
    listed = set(re.findall(r"[a-z]+", unchanged))
    assert "codeine" not in listed and "tramadol" not in listed
    assert "hydrocodone" in listed


def test_an_adults_card_has_no_age_rule(call):
    """Negative control: the same results, an adult."""
    [card] = view_with(call, genotype_obs("*1/*1", obs_id="d6"), patient=child(40))
    assert card["summary"] == "PGx for pain, no change in advice: CYP2D6 normal metabolizer"
    assert "contraindicated" not in card["detail"]


def test_a_child_who_is_a_poor_metabolizer_gets_both_stories(call):
    [card] = view_with(call, genotype_obs("*4/*4", obs_id="d6"), patient=child(7))
    assert card["summary"].startswith(
        "PGx for pain: codeine, dihydrocodeine, tramadol contraindicated (FDA label); "
        "CYP2D6 poor metabolizer"
    )
    assert rows(card["detail"])["codeine"].startswith("**Avoid**")
    assert "- codeine: **Codeine is contraindicated" in card["detail"]


@responses.activate
def test_without_prefetch_the_patient_is_read_for_the_age_rules(call):
    responses.get(SEARCH, json=bundle(genotype_obs("*1/*1", obs_id="d6")))
    responses.get(MEDS, json=bundle())
    responses.get(f"{FHIR}/Patient/{PATIENT}", json=child(7))
    status, answer = call(view_request(fhir_server=FHIR, token="t"))
    assert status == 200
    [card] = answer["cards"]
    assert "codeine, dihydrocodeine, tramadol contraindicated (FDA label)" in card["summary"]
    [read] = [c for c in responses.calls if c.request.url.endswith(f"/Patient/{PATIENT}")]
    assert read.request.headers["Authorization"] == "Bearer t"


def test_the_tests_to_order_first_are_listed_as_the_pre_test_cards_say(call):
    [card] = view_with(call, genotype_obs("*1/*1", obs_id="d6"))
    assert "- carbamazepine: **Carbamazepine: no HLA-B\\*15:02 result on file**" in card["detail"]
    # with an HLA-B*15:02 result on file, no pre-test line
    negative = genotype_obs("HLA-B*07:02:01+HLA-B*08:01:01", "HLA-B", obs_id="hla")
    [card] = view_with(call, genotype_obs("*1/*1", obs_id="d6"), negative)
    assert "no HLA-B\\*15:02 result on file" not in card["detail"]


def test_the_genetic_phenotype_is_shown_beside_the_converted_one(call):
    """An ultrarapid metabolizer on duloxetine: not 'normal metabolizer, no change in advice'
    as before, but the genotype's advice, with the interaction beside it."""
    duloxetine = med_order(DULOXETINE, order_id="dul")
    duloxetine["status"] = "active"
    [card] = view_with(call, genotype_obs("*1/*1x2", obs_id="d6"), meds=[duloxetine])
    assert card["summary"] == (
        "PGx for pain: CYP2D6 ultrarapid metabolizer by genotype, normal metabolizer while "
        "taking duloxetine — 12 pain drugs affected"
    )
    assert "| **CYP2D6** | **ultrarapid metabolizer by genotype** |" in card["detail"]
    codeine = rows(card["detail"])["codeine"]
    assert codeine.startswith("**Avoid** (CPIC, strong).")
    assert codeine.endswith("While taking duloxetine: label dosing (not to be relied on).")


def test_results_that_disagree_are_listed_with_each_result(call):
    g = genotype_obs("*1/*1", obs_id="g", date="2018-03-12")
    g["performer"] = [{"display": "Acme Genomics"}]
    p = phenotype_obs("Poor Metabolizer", obs_id="p", date="2024-06-03")
    [card] = view_with(call, g, p)
    assert card["summary"] == (
        "PGx for pain: CYP2D6 results disagree (normal vs poor metabolizer) — 15 pain drugs "
        "affected"
    )
    detail = card["detail"]
    assert "| **CYP2D6** | **results disagree — verify before prescribing** |" in detail
    assert (
        "| result | genotype `*1/*1` (read as normal metabolizer, activity score 2), 2018-03-12, "
        "Acme Genomics |" in detail
    )
    assert "| result | phenotype 'Poor metabolizer' (read as poor metabolizer), 2024-06-03 |" in (
        detail
    )
    assert rows(detail)["codeine"].startswith("**Avoid** if CYP2D6 poor metabolizer (CPIC, strong)")
    assert rows(detail)["codeine"].endswith(
        "If CYP2D6 normal metabolizer (activity score 2): label dosing."
    )


def test_results_that_disagree_without_changing_any_advice_are_still_listed(call):
    """CYP2C19 normal and intermediate on one day: no covered drug's advice differs (CPIC
    gives amitriptyline alone the usual dose either way), but the disagreement is shown."""
    [card] = view_with(
        call,
        phenotype_obs("Normal Metabolizer", "CYP2C19", obs_id="a"),
        phenotype_obs("Intermediate Metabolizer", "CYP2C19", obs_id="b"),
    )
    assert card["summary"] == (
        "PGx for pain, no change in advice: CYP2C19 results disagree "
        "(intermediate vs normal metabolizer)"
    )
    assert "| **CYP2C19** | **results disagree — verify before prescribing** |" in card["detail"]


def site_view(tmp_path, config, *observations, patient=None):
    path = tmp_path / "site.json"
    path.write_text(json.dumps(config))
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", site_config=path)
    prefetch = {**with_results(*observations), "activeMedications": bundle(), "patient": patient}
    with create_app(settings).test_client() as client:
        response = client.post("/cds-services/pgx-patient-view", json=view_request(prefetch))
    assert response.status_code == 200
    return response.get_json()["cards"]


def test_a_drug_off_for_the_site_is_not_listed(tmp_path):
    [card] = site_view(
        tmp_path, {"drugs": {"codeine": "off"}}, genotype_obs("*4/*4"), patient=child(7)
    )
    assert "codeine" not in re.findall(r"[a-z]+", card["summary"])  # "tramadol contraind..."
    assert "codeine" not in rows(card["detail"]) and "- codeine:" not in card["detail"]
    assert rows(card["detail"])["tramadol"].startswith("**Avoid**")
    assert card["summary"].endswith("— 14 pain drugs affected")  # 15 less codeine


def test_a_silent_drug_gets_no_advice_and_is_named_as_not_shown(tmp_path):
    [card] = site_view(tmp_path, {"drugs": {"codeine": "silent"}}, genotype_obs("*4/*4"))
    advice = rows(card["detail"])
    assert "codeine" not in advice and "tramadol" in advice
    assert (
        "**Not shown at this site** (site configuration; no advice is given here, which does "
        "not mean none applies): codeine." in card["detail"]
    )
    unchanged = [ln for ln in card["detail"].splitlines() if ln.startswith("| no change |")]
    assert not any("codeine (" in ln.replace("dihydrocodeine", "") for ln in unchanged)


def test_a_gene_whose_only_affected_drugs_are_silent_is_never_called_unchanged(tmp_path):
    config = {"default": "silent", "drugs": {"celecoxib": "on"}}
    [card] = site_view(tmp_path, config, genotype_obs("*4/*4"))
    assert "no change in advice" not in card["summary"].lower()
    assert card["summary"] == (
        "PGx for pain: CYP2D6 poor metabolizer (advice for some drugs not shown at this site)"
    )
    assert "**No change in advice:**" not in card["detail"]
    assert "**Results:** CYP2D6 poor metabolizer `*4/*4`." in card["detail"]


def test_the_no_results_card_lists_the_age_rules(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", patient_view_no_results_card=True
    )
    prefetch = {"genomicResults": bundle(), "activeMedications": None, "patient": child(7)}
    with create_app(settings).test_client() as client:
        response = client.post("/cds-services/pgx-patient-view", json=view_request(prefetch))
    [card] = response.get_json()["cards"]
    assert card["summary"] == "PGx for pain: no pharmacogenomic results on file"
    assert "- codeine: **Codeine is contraindicated in children under 12" in card["detail"]


def test_an_unclear_hla_typing_is_listed_as_its_prescribing_card_says(call):
    """The only result is a low-resolution HLA-B typing: no row applies, but carbamazepine's
    prescribing card warns that HLA-B*15:02 is not excluded; the chart says the same."""
    [card] = view_with(call, genotype_obs("HLA-B*15+HLA-B*40", "HLA-B", obs_id="b"))
    assert card["summary"] == "PGx for pain: HLA-B*15:02 not excluded (result unclear)"
    assert (
        "- carbamazepine: **Carbamazepine: HLA-B\\*15:02 not excluded by the result on file; "
        "confirm before starting**" in card["detail"]
    )
