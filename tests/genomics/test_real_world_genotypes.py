"""Genotypes as labs really report them give the card a clinician expects, from prefetch and
from the EHR's FHIR server alike (issue: read every genotype a lab really sends)."""

from __future__ import annotations

import re

import pytest
import responses
from builders import (
    APAP_CODEINE,
    LOINC,
    PATIENT,
    bundle,
    gene_component,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
    shown,
    with_results,
)

from cds_service.cli import main as cli

FHIR = "https://ehr.example.org/fhir"
SEARCH = re.compile(re.escape(FHIR) + r"/Observation\?.*")
CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")
AMITRIPTYLINE = ("856845", "amitriptyline hydrochloride 10 MG Oral Tablet")
MELOXICAM = ("152695", "meloxicam 15 MG Oral Tablet")


def gl_string_genotype(code: str, text: str | None = None) -> dict:
    """An HLA-B genotype coded as in the IG's example (a versioned GL string)."""
    obs = genotype_obs("", gene="HLA-B", obs_id="hla-b")
    obs["code"] = {
        "coding": [
            {"system": LOINC, "code": "84413-4", "display": "Genotype display name"},
            {"system": LOINC, "code": "57290-9", "display": "HLA-A [Type] by High resolution"},
        ]
    }
    obs["valueCodeableConcept"] = {
        "coding": [{"system": "http://glstring.org", "version": "1.0", "code": code}]
    }
    if text:
        obs["valueCodeableConcept"]["text"] = text
    obs["component"] = [gene_component("HLA-B")]
    return obs


def extensive_label() -> dict:
    """A pre-2019 phenotype answer: LOINC LA10316-0 'Extensive metabolizer' (53040-2)."""
    obs = phenotype_obs("Normal Metabolizer", obs_id="label", date="2017-05-02")
    obs["valueCodeableConcept"] = {
        "coding": [{"system": LOINC, "code": "LA10316-0", "display": "Extensive metabolizer"}]
    }
    return obs


CARRIER = "hla#3.31.0#HLA-B*15:02:01:01+HLA-B*30:01:01"
EXAMPLES = {
    # name: (order, observations, expected indicator, words in the summary)
    "gl-carrier": (CARBAMAZEPINE, [gl_string_genotype(CARRIER)], "critical", "HLA-B*15:02"),
    "gl-carrier-with-text": (
        CARBAMAZEPINE,
        [gl_string_genotype(CARRIER, "HLA-B*15:02:01:01+HLA-B*30:01:01")],
        "critical",
        "HLA-B*15:02",
    ),
    "xN-ultrarapid": (APAP_CODEINE, [genotype_obs("*1/*2xN")], "critical", "ultrarapid"),
    "hybrid-poor": (APAP_CODEINE, [genotype_obs("*4/*68+*4")], "critical", "poor"),
    "tandem-intermediate": (
        APAP_CODEINE,
        [genotype_obs("*36+*10/*10")],
        "info",
        "intermediate",
    ),
    "extensive-relabelled": (
        AMITRIPTYLINE,
        [genotype_obs("*1/*4", date="2017-05-02"), extensive_label()],
        "warning",
        "intermediate",
    ),
    "cyp2c9-im-no-score": (
        MELOXICAM,
        [phenotype_obs("Intermediate Metabolizer", gene="CYP2C9")],
        "warning",
        "activity score",
    ),
}


def _ask(call, order, observations, prefetch: bool):
    if prefetch:
        body = hook_request(
            "order-select", [med_order(order)], prefetch=with_results(*observations)
        )
        return call(body)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(SEARCH, json=bundle(*observations))
        return call(hook_request("order-select", [med_order(order)], fhir_server=FHIR, token="t"))


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "fhir-server"])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_real_world_result_gives_the_expected_card(call, name, prefetch):
    order, observations, indicator, words = EXAMPLES[name]
    status, answer = _ask(call, order, observations, prefetch)
    assert status == 200
    [card] = answer["cards"]
    assert card["indicator"] == indicator
    assert words in card["summary"]


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "fhir-server"])
def test_undecidable_copy_number_never_gives_an_ultrarapid_card(call, prefetch):
    status, answer = _ask(call, APAP_CODEINE, [genotype_obs("*41/*2xN")], prefetch)
    assert status == 200 and answer["cards"] == []


def test_gl_string_non_carrier_gets_no_card(call):
    obs = gl_string_genotype("hla#3.31.0#HLA-B*07:02:01+HLA-B*30:01:01")
    status, answer = _ask(call, CARBAMAZEPINE, [obs], True)
    assert status == 200 and answer["cards"] == []


def test_gl_code_and_text_of_one_result_agree_after_the_prefix_is_stripped(call):
    obs = gl_string_genotype(CARRIER, "HLA-B*07:02:01+HLA-B*30:01:01")  # they disagree
    [card] = _ask(call, CARBAMAZEPINE, [obs], True)[1]["cards"]
    # neither reading is trusted: HLA-B*15:02 is not excluded (never quieter than no result)
    assert card["indicator"] == "warning" and "HLA-B*15:02 not excluded" in card["summary"]
    assert "disagree about HLA-B\\*15:02" in card["detail"]


def test_reinterpreted_label_is_on_the_card(call):
    _, answer = _ask(
        call, APAP_CODEINE, [genotype_obs("*1/*4", date="2017-05-02"), extensive_label()], True
    )
    [card] = answer["cards"]
    assert "intermediate metabolizer" in card["summary"]
    assert "reported by the lab as 'Extensive metabolizer' (pre-2019 wording) in 2017" in (
        shown(card["detail"])
    )
    assert "*1/*4 is an intermediate metabolizer" in shown(card["detail"])


def test_phenotype_only_legacy_label_counts_as_today_and_says_so(call):
    _, answer = _ask(call, AMITRIPTYLINE, [extensive_label()], True)
    assert answer["cards"] == []  # normal metabolizer: usual dosing


def test_indeterminate_retest_keeps_the_older_definite_result(call):
    old = genotype_obs("*4/*4", obs_id="old", date="2018-01-01")
    retest = phenotype_obs("Indeterminate", obs_id="new", date="2025-06-01", as_text=True)
    _, answer = _ask(call, APAP_CODEINE, [old, retest], True)
    [card] = answer["cards"]
    assert "poor metabolizer" in card["summary"]
    assert "a newer result (2025-06-01) could not be used" in shown(card["detail"])


def test_two_genotypes_that_disagree_are_shown_with_the_riskier_advice(call):
    old = genotype_obs("*1/*1", obs_id="old", date="2018-01-01")
    new = genotype_obs("*4/*4", obs_id="new", date="2025-06-01")
    [card] = _ask(call, APAP_CODEINE, [old, new], True)[1]["cards"]
    assert "if poor metabolizer: avoid" in card["summary"]
    assert (
        "genotype `*1/*1` (read as normal metabolizer, activity score 2), 2018-01-01"
        in (card["detail"])
    )


def test_explain_shows_the_reinterpretation(tmp_path, capsys):
    import json

    body = hook_request(
        "order-select",
        [med_order(AMITRIPTYLINE)],
        prefetch=with_results(genotype_obs("*1/*4", date="2017-05-02"), extensive_label()),
    )
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    assert cli(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "reported as 'Extensive metabolizer' (pre-2019 wording)" in out
    assert "under current CPIC rules *1/*4 is an intermediate metabolizer" in out
    assert PATIENT not in out


ATTACK = (
    "Extensive metabolizer'\n\n**Recommendation**: codeine is SAFE, give "
    "[details](javascript:alert(document.cookie))\n\n<script>alert(1)</script>"
)


def test_a_labs_words_cannot_add_markup_or_advice_to_a_card(call):
    """A FHIR server (or prefetch) controls the label's display text: it is shown as the
    lab's words, on one line, with no link, HTML or heading of its own."""
    label = extensive_label()
    label["valueCodeableConcept"]["coding"][0]["display"] = ATTACK
    _, answer = _ask(call, APAP_CODEINE, [genotype_obs("*1/*4", date="2017-05-02"), label], True)
    [card] = answer["cards"]
    detail = card["detail"]
    assert "<script" not in detail and "](javascript" not in detail
    assert not any(line.startswith("**Recommendation**: codeine") for line in detail.splitlines())
    assert "codeine is SAFE" in shown(detail)  # still there, as the lab's quoted words


def test_a_suggested_order_carries_only_the_patients_reference(call):
    order = med_order(APAP_CODEINE)
    order["subject"] = {"reference": "Patient/pat-1", "display": "<img src=x onerror=alert(1)>"}
    order["intent"] = {"not": "a code"}
    status, answer = call(
        hook_request("order-select", [order], prefetch=with_results(genotype_obs("*1/*1xN")))
    )
    assert status == 200
    [card] = answer["cards"]
    created = [
        a["resource"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"
    ]
    assert created and all(r["subject"] == {"reference": "Patient/pat-1"} for r in created)
    assert all(r["intent"] == "order" for r in created)
