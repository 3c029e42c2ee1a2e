"""Results that disagree are shown, not resolved silently (issue 22, item 3): each reading is
matched (``recommendations.match``), the card follows the riskier one, lists every result and
says what each reading advises; at least a warning."""

from __future__ import annotations

import json

from builders import (
    APAP_CODEINE,
    HYDROCODONE,
    TRAMADOL,
    bundle,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)

from cds_service.cli import main as cli

CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")


def at(obs: dict, lab: str) -> dict:
    obs["performer"] = [{"reference": "Organization/lab", "display": lab}]
    return obs


def ask(call, product, *observations):
    body = hook_request(
        "order-select",
        [med_order(product)],
        prefetch={**with_results(*observations), "activeMedications": bundle(), "patient": None},
    )
    status, answer = call(body)
    assert status == 200
    return answer["cards"]


def the_issues_results():
    """A 2018 genotype *1/*1 and a 2024 'poor metabolizer' from another lab."""
    return (
        at(genotype_obs("*1/*1", obs_id="g2018", date="2018-03-12"), "Acme Genomics"),
        at(phenotype_obs("Poor Metabolizer", obs_id="p2024", date="2024-06-03"), "Northside Lab"),
    )


def test_a_genotype_and_a_newer_report_no_rule_change_explains_give_a_card(call):
    [card] = ask(call, APAP_CODEINE, *the_issues_results())
    assert card["indicator"] == "critical"  # the poor metabolizer's strong avoid
    assert card["summary"] == (
        "CYP2D6 results disagree — verify before prescribing codeine (if poor metabolizer: avoid)"
    )
    detail = card["detail"]
    assert detail.startswith("**CYP2D6 results disagree — verify before prescribing.**")
    # each result: value, date, lab
    assert (
        "- genotype `*1/*1` (read as normal metabolizer, activity score 2), 2018-03-12, "
        "Acme Genomics" in detail
    )
    assert (
        "- phenotype 'Poor metabolizer' (read as poor metabolizer), 2024-06-03, Northside Lab"
        in detail
    )
    # what each reading advises, the card's first
    assert "- **If CYP2D6 poor metabolizer** (this card): Avoid (CPIC, strong)." in detail
    assert "- **If CYP2D6 normal metabolizer (activity score 2):** no card (label dosing)." in (
        detail
    )
    assert "**Recommendation** (CPIC, strong): Do not prescribe codeine." in detail
    assert card["suggestions"]  # the riskier reading's alternatives


def test_two_results_of_one_day_that_disagree_give_a_card(call):
    ultrarapid = at(phenotype_obs("Ultrarapid Metabolizer", obs_id="a"), "Lab A")
    normal = at(phenotype_obs("Normal Metabolizer", obs_id="b"), "Lab B")
    for observations in ((ultrarapid, normal), (normal, ultrarapid)):
        [card] = ask(call, TRAMADOL, *observations)
        assert card["indicator"] == "critical"
        assert card["summary"] == (
            "CYP2D6 results disagree — verify before prescribing tramadol "
            "(if ultrarapid metabolizer: avoid)"
        )
        assert "2024-03-01, Lab A" in card["detail"] and "2024-03-01, Lab B" in card["detail"]


def test_a_discordance_is_at_least_a_warning(call):
    """Normal and intermediate on one day: the intermediate reading's caution is an info card
    on its own; results that disagree make it a warning (verify before prescribing)."""
    [card] = ask(
        call,
        APAP_CODEINE,
        phenotype_obs("Normal Metabolizer", obs_id="a"),
        phenotype_obs("Intermediate Metabolizer", obs_id="b"),
    )
    assert card["indicator"] == "warning"
    assert card["summary"] == (
        "CYP2D6 results disagree — verify before prescribing codeine "
        "(if intermediate metabolizer: reduced or uncertain response possible)"
    )


def test_no_reading_with_advice_for_the_order_gives_no_card_but_explain_shows_it(
    call, tmp_path, capsys
):
    """Hydrocodone: label dosing for a normal metabolizer, no recommendation for an
    ultrarapid one. The disagreement cannot change this order's advice: no card (as with no
    result at all), and explain says why."""
    results = (
        phenotype_obs("Ultrarapid Metabolizer", obs_id="a"),
        phenotype_obs("Normal Metabolizer", obs_id="b"),
    )
    assert ask(call, HYDROCODONE, *results) == []
    body = hook_request("order-select", [med_order(HYDROCODONE)], prefetch=with_results(*results))
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    assert cli(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "CYP2D6: results disagree and no change of CPIC's rules explains it" in out
    assert "hydrocodone [CYP2D6 ultrarapid metabolizer]: hydrocodone-cyp2d6-um" in out
    assert "hydrocodone [CYP2D6 normal metabolizer]: hydrocodone-cyp2d6-nm" in out
    assert "0 card(s)" in out


def test_explain_shows_each_result_of_a_discordance_and_the_reading_followed(tmp_path, capsys):
    body = hook_request(
        "order-select", [med_order(APAP_CODEINE)], prefetch=with_results(*the_issues_results())
    )
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    assert cli(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "Observation/g2018 (genotype '*1/*1' -> Normal Metabolizer, activity score 2, "
        "2018-03-12, lab 'Acme Genomics')" in out
    )
    assert "Observation/p2024 (phenotype 'Poor metabolizer' -> Poor Metabolizer" in out
    assert "the most severe advice is followed (CYP2D6 poor metabolizer)" in out
    assert "[critical] CYP2D6 results disagree — verify before prescribing codeine" in out


def test_hla_results_that_disagree_follow_the_positive_reading(call):
    positive = genotype_obs(
        "HLA-B*15:02:01+HLA-B*07:02:01", "HLA-B", obs_id="b1", date="2016-01-01"
    )
    negative = genotype_obs(
        "HLA-B*07:02:01+HLA-B*08:01:01", "HLA-B", obs_id="b2", date="2024-01-01"
    )
    [card] = ask(call, CARBAMAZEPINE, positive, negative)
    assert card["indicator"] == "critical"
    assert card["summary"].startswith(
        "HLA-B*15:02 results disagree — verify before prescribing carbamazepine (if positive"
    )


def test_a_labs_name_cannot_add_markup_to_a_card(call):
    hostile = "Lab](javascript:alert(1)) **SAFE** <img src=x>"
    results = the_issues_results()
    [card] = ask(call, APAP_CODEINE, results[0], at(results[1], hostile))
    detail = card["detail"]
    assert "](javascript" not in detail and "<img" not in detail and "**SAFE**" not in detail
    assert "Lab\\]\\(javascript:alert\\(1\\)\\) \\*\\*SAFE\\*\\* &lt;img src=x&gt;" in detail


def test_results_that_agree_give_the_usual_card(call):
    """Negative control: the same day, the same call from a genotype and a phenotype."""
    [card] = ask(
        call,
        APAP_CODEINE,
        at(genotype_obs("*4/*4", obs_id="g"), "Lab A"),
        at(phenotype_obs("Poor Metabolizer", obs_id="p"), "Lab B"),
    )
    assert card["summary"] == "Avoid codeine: CYP2D6 poor metabolizer"
    assert "disagree" not in card["detail"] and "Lab A" not in card["detail"]
