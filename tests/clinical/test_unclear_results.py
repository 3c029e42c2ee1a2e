"""HLA typing that cannot exclude HLA-B*15:02 (issue 22, item 4): an unclear result is never
treated more quietly than no result.

Low-resolution typing (HLA-B*15), allele ambiguity (HLA-B*15:02/HLA-B*15:13), NMDP codes
(HLA-B*15:XX) and the like used to give carbamazepine no card at all (no guideline row fits,
and a result on file meant no pre-test card), while an untested patient got the pre-test card.
Now: a warning that HLA-B*15:02 is not excluded, with the test to order; the same for
HLA-A*31:01 where the knowledge uses it. A clear negative result still gives no card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from builders import (
    APAP_CODEINE,
    LOINC,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)

from cds_service.core.hook_request import parse_hook_request
from cds_service.knowledge.loader import Knowledge
from cds_service.pipeline import Engine
from cds_service.settings import default_knowledge_dir

CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")
OXCARBAZEPINE = ("312136", "oxcarbazepine 150 MG Oral Tablet")
LEVELS = {None: 0, "info": 1, "warning": 2, "critical": 3}


def hla_b(value: str, *, obs_id: str = "hla-b", date: str = "2024-03-01") -> dict:
    return genotype_obs(value, gene="HLA-B", obs_id=obs_id, date=date)


def hla_a(value: str, *, obs_id: str = "hla-a") -> dict:
    return genotype_obs(value, gene="HLA-A", obs_id=obs_id)


def presence(code: str, value: dict, *, obs_id: str = "b1502", date: str = "2024-03-01") -> dict:
    obs = phenotype_obs("Normal Metabolizer", obs_id=obs_id, date=date)
    obs.pop("valueCodeableConcept")
    obs.pop("component")
    obs["code"] = {"coding": [{"system": LOINC, "code": code}]}
    return {**obs, **value}


def answer(code: str) -> dict:
    return {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": code}]}}


def cards(call, product, *observations):
    status, found = call(
        hook_request("order-sign", [med_order(product)], prefetch=with_results(*observations))
    )
    assert status == 200
    return found["cards"]


def explain(knowledge, settings, product, *observations) -> tuple[list[dict], str]:
    body = hook_request("order-sign", [med_order(product)], prefetch=with_results(*observations))
    found, trace = Engine(knowledge, settings).evaluate(parse_hook_request(body, body["hook"]))
    return found["cards"], trace.render()


UNCLEAR_B1502 = {
    "low resolution": hla_b("HLA-B*15+HLA-B*40"),
    "low resolution, lab list": hla_b("B*15, B*40"),
    "allele ambiguity": hla_b("HLA-B*15:02/HLA-B*15:13+HLA-B*07:02"),
    "NMDP code XX": hla_b("HLA-B*15:XX+HLA-B*07:02"),
    "NMDP code AB": hla_b("HLA-B*15:AB+HLA-B*07:02"),
    "genotype ambiguity": hla_b("HLA-B*15:02+HLA-B*07:02|HLA-B*15:13+HLA-B*07:02"),
    "null allele": hla_b("HLA-B*15:02:01N+HLA-B*07:02"),
    "presence inconclusive": presence("57979-7", {"valueString": "Inconclusive"}),
}


def _as_list(observation) -> list[dict]:
    return observation if isinstance(observation, list) else [observation]


@pytest.mark.parametrize("observation", UNCLEAR_B1502.values(), ids=UNCLEAR_B1502.keys())
@pytest.mark.parametrize(
    ("product", "drug"), [(CARBAMAZEPINE, "Carbamazepine"), (OXCARBAZEPINE, "Oxcarbazepine")]
)
def test_typing_that_cannot_exclude_b1502_gives_a_warning_with_the_test(
    call, observation, product, drug
):
    [card] = cards(call, product, *_as_list(observation))
    assert card["indicator"] == "warning"
    assert card["summary"].startswith(f"{drug}: HLA-B*15:02 not excluded")
    assert "high-resolution" in card["detail"] and "29392710" in card["detail"]
    assert "**Result on file:**" in card["detail"]  # the typing and why it settles nothing
    [suggestion] = card["suggestions"]  # as the pre-test card: order the B*15:02 test
    [action] = suggestion["actions"]
    assert action["resource"]["resourceType"] == "ServiceRequest"
    assert action["resource"]["code"]["coding"][0]["code"] == "57979-7"
    assert action["resource"]["subject"] == {"reference": "Patient/pat-1"}


@pytest.mark.parametrize("observation", UNCLEAR_B1502.values(), ids=UNCLEAR_B1502.keys())
def test_an_unclear_result_is_never_quieter_than_no_result(call, observation):
    [untested] = cards(call, CARBAMAZEPINE)
    assert untested["summary"] == "Carbamazepine: no HLA-B*15:02 result on file"
    unclear = cards(call, CARBAMAZEPINE, *_as_list(observation))
    assert max(LEVELS[c["indicator"]] for c in unclear) >= LEVELS[untested["indicator"]]


def test_the_card_shows_the_typing_verbatim(call):
    [card] = cards(call, CARBAMAZEPINE, hla_b("HLA-B*15:XX+HLA-B*07:02"))
    assert "`HLA-B*15:XX+HLA-B*07:02`" in card["detail"]
    assert "ambiguous about HLA-B\\*15:02" in card["detail"]


def test_clear_presence_results_of_one_day_that_disagree_follow_the_positive_reading(call):
    """Present on one report, absent on another: not an unclear result but a discordance
    (issue 22, item 3). The card follows the positive reading (CPIC's strong avoid), louder
    than the 'not excluded' warning, and says the results disagree."""
    observations = [
        presence("57979-7", answer("LA9633-4"), obs_id="p1"),
        presence("57979-7", answer("LA9634-2"), obs_id="p2"),
    ]
    for product, drug in ((CARBAMAZEPINE, "carbamazepine"), (OXCARBAZEPINE, "oxcarbazepine")):
        [card] = cards(call, product, *observations)
        assert card["indicator"] == "critical"
        assert card["summary"].startswith(
            f"HLA-B*15:02 results disagree — verify before prescribing {drug} (if positive"
        )
        assert "(read as positive)" in card["detail"] and "(read as negative)" in card["detail"]


# -- negative controls ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "observations",
    [
        [hla_b("HLA-B*07:02:01+HLA-B*44:03:01")],  # high resolution, no B*15:02
        [hla_b("HLA-B*15:01:01+HLA-B*44:03:01")],  # high resolution, another B*15
        [hla_b("hla#3.31.0#HLA-B*15:13:01+HLA-B*40:01:02")],  # the IG's GL string
        [presence("57979-7", answer("LA9634-2"))],  # presence absent
        # an unclear newer typing does not erase an older clear negative (genes do not change)
        [
            hla_b("HLA-B*07:02+HLA-B*44:03", obs_id="old", date="2019-01-01"),
            hla_b("HLA-B*15+HLA-B*44", obs_id="new", date="2024-01-01"),
        ],
    ],
)
@pytest.mark.parametrize("product", [CARBAMAZEPINE, OXCARBAZEPINE])
def test_a_clear_negative_result_gives_no_card(call, product, observations):
    assert cards(call, product, *observations) == []


def test_a_clear_positive_result_gives_the_critical_card_only(call):
    [card] = cards(call, CARBAMAZEPINE, hla_b("HLA-B*15:02:01+HLA-B*15:XX"))
    assert card["indicator"] == "critical" and card["summary"].startswith("Avoid carbamazepine")


# -- HLA-A*31:01 (carbamazepine only) -------------------------------------------------------


def test_unclear_a3101_with_b1502_negative_gives_a_warning_with_the_a3101_test(call):
    [card] = cards(
        call, CARBAMAZEPINE, hla_b("HLA-B*07:02+HLA-B*44:03"), hla_a("HLA-A*31+HLA-A*02:01")
    )
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Carbamazepine: HLA-A*31:01 not excluded")
    [suggestion] = card["suggestions"]
    assert suggestion["actions"][0]["resource"]["code"]["coding"][0]["code"] == "79712-6"


def test_clear_negative_a3101_with_b1502_negative_gives_no_card(call):
    found = cards(
        call, CARBAMAZEPINE, hla_b("HLA-B*07:02+HLA-B*44:03"), hla_a("HLA-A*02:01:01+HLA-A*24:02")
    )
    assert found == []


def test_unclear_a3101_beside_a_b1502_carrier_adds_nothing_to_the_avoid_card(knowledge, settings):
    """CPIC: a B*15:02 carrier avoids carbamazepine whatever HLA-A*31:01 is."""
    found, text = explain(
        knowledge,
        settings,
        CARBAMAZEPINE,
        hla_b("HLA-B*15:02+HLA-B*44:03"),
        hla_a("HLA-A*31+HLA-A*02:01"),
    )
    assert [c["indicator"] for c in found] == ["critical"]
    assert "HLA-A*31:01 result is unclear" in text and "no separate card" in text


def test_oxcarbazepine_has_no_hla_a_advice_so_no_hla_a_card(call):
    found = cards(
        call, OXCARBAZEPINE, hla_b("HLA-B*07:02+HLA-B*44:03"), hla_a("HLA-A*31+HLA-A*02:01")
    )
    assert found == []


def test_unclear_b1502_and_a3101_each_get_their_card(call):
    found = cards(call, CARBAMAZEPINE, hla_b("HLA-B*15+HLA-B*44"), hla_a("HLA-A*31+HLA-A*02:01"))
    assert sorted(c["source"]["topic"]["code"] for c in found) == [
        "carbamazepine-hlaa3101-unclear",
        "carbamazepine-hlab1502-unclear",
    ]


# -- explain, data, other pre-test drugs ---------------------------------------------------


def test_explain_says_why_the_card_was_shown(knowledge, settings):
    _, text = explain(knowledge, settings, CARBAMAZEPINE, hla_b("HLA-B*15+HLA-B*40"))
    assert "HLA-B*15:02 result is indeterminate: no guideline row applies" in text
    assert "carbamazepine: HLA-B*15:02 not excluded ('HLA-B*15+HLA-B*40' is ambiguous" in text
    assert "warning card carbamazepine-hlab1502-unclear" in text


def test_the_rules_are_data_per_drug_and_marker(tmp_path, settings):
    """Without oxcarbazepine's rule, its unclear result falls back to the pre-test card (never
    silent); the rule makes it the warning. No code names a drug."""
    copy = tmp_path / "knowledge"
    shutil.copytree(default_knowledge_dir(), copy)
    path = copy / "rules" / "unclear_results.json"
    data = json.loads(path.read_text())
    data["rules"] = [r for r in data["rules"] if r["drug"] != "oxcarbazepine"]
    path.write_text(json.dumps(data))
    found, text = explain(Knowledge(copy), settings, OXCARBAZEPINE, hla_b("HLA-B*15+HLA-B*40"))
    [card] = found
    assert card["indicator"] == "info"
    assert card["summary"] == "Oxcarbazepine: the HLA-B*15:02 result on file is unclear"
    assert (
        card["suggestions"][0]["actions"][0]["resource"]["code"]["coding"][0]["code"] == "57979-7"
    )
    assert "the pre-test card, as for no result" in text


def test_a_rule_must_name_a_marker_the_drug_s_rows_use(tmp_path):
    copy = tmp_path / "knowledge"
    shutil.copytree(default_knowledge_dir(), copy)
    path = copy / "rules" / "unclear_results.json"
    data = json.loads(path.read_text())
    data["rules"][0]["drug"] = "codeine"
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="no recommendation of 'codeine' uses HLA-B"):
        Knowledge(copy)


def test_a_site_s_pretest_drug_with_an_unclear_result_keeps_its_pretest_card(tmp_path, settings):
    """Codeine's pre-test card switched on by a site: a 'Possible poor metabolizer' (no advice)
    gets it as an untested patient would; a clear result does not."""
    from cds_service.web.app import create_app

    app = create_app(settings.model_copy(update={"pretest_drugs": "codeine"}))
    client = app.test_client()

    def codeine(*observations):
        body = hook_request(
            "order-sign", [med_order(APAP_CODEINE)], prefetch=with_results(*observations)
        )
        return client.post("/cds-services/pgx-order-sign", json=body).get_json()["cards"]

    [untested] = codeine()
    [unclear] = codeine(phenotype_obs("Possible poor metabolizer", as_text=True))
    assert untested["summary"] == "Codeine: no CYP2D6 result on file"
    assert unclear["summary"] == "Codeine: the CYP2D6 result on file is unclear"
    assert unclear["indicator"] == untested["indicator"] == "info"
    assert "Possible poor metabolizer" in unclear["detail"]
    assert codeine(phenotype_obs("Normal Metabolizer")) == []


def test_a_site_can_set_the_unclear_card_s_indicator(tmp_path, settings):
    from cds_service.web.app import create_app

    path = Path(tmp_path / "site.json")
    path.write_text(json.dumps({"indicators": {"carbamazepine-hlab1502-unclear": "critical"}}))
    app = create_app(settings.model_copy(update={"site_config": path}))
    body = hook_request(
        "order-sign", [med_order(CARBAMAZEPINE)], prefetch=with_results(hla_b("HLA-B*15+HLA-B*40"))
    )
    [card] = app.test_client().post("/cds-services/pgx-order-sign", json=body).get_json()["cards"]
    assert card["indicator"] == "critical"
