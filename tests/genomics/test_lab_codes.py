"""Result codes that real labs send (issue 22, item 6): the gene-specific LOINC phenotype and
genotype codes, the HLA-A*31:01 presence code, and CPIC's "Likely" and "Possible" terms.

A result coded only one of these ways is read (the code says the kind and the gene) and
fetched (the FHIR search asks for every mapped code)."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import responses
from builders import (
    APAP_CODEINE,
    LOINC,
    bundle,
    gene_component,
    hook_request,
    is_results_search,
    med_order,
    phenotype_obs,
    with_results,
)

from cds_service.core.hook_request import parse_hook_request
from cds_service.fhir.queries import genomic_query, prefetch_templates
from cds_service.pipeline import Engine

FHIR = "https://ehr.example.org/fhir"
SEARCH = re.compile(re.escape(FHIR) + r"/Observation\?.*")
CELECOXIB = ("205323", "celecoxib 200 MG Oral Capsule")
AMITRIPTYLINE = ("704", "amitriptyline")
CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")


def coded(code: str, *, obs_id: str = "lab-1", gene: str | None = None, **value) -> dict:
    """An Observation coded only with LOINC ``code`` (no display, no text), as a lab's
    interface sends it; a gene-studied component only when ``gene`` is given."""
    obs = phenotype_obs("Normal Metabolizer", obs_id=obs_id)
    obs.pop("valueCodeableConcept")
    obs.pop("component")
    obs["code"] = {"coding": [{"system": LOINC, "code": code}]}
    if gene:
        obs["component"] = [gene_component(gene)]
    return {**obs, **value}


def cards(call, product, *observations):
    status, answer = call(
        hook_request("order-sign", [med_order(product)], prefetch=with_results(*observations))
    )
    assert status == 200
    return answer["cards"]


# -- each mapped code is read -------------------------------------------------------------


@pytest.mark.parametrize(
    ("observation", "product", "indicator", "summary"),
    [
        # CYP2D6 metabolic activity interpretation, LOINC answer or text
        (
            coded(
                "79715-9", valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA9657-3"}]}
            ),
            APAP_CODEINE,
            "critical",
            "Avoid codeine: CYP2D6 poor metabolizer",
        ),
        (coded("79715-9", valueString="Ultrarapid metabolizer"), APAP_CODEINE, "critical", None),
        # CYP2C19 metabolic activity interpretation
        (
            coded("79714-2", valueString="Poor metabolizer"),
            AMITRIPTYLINE,
            "warning",
            "CYP2C19 poor metabolizer",
        ),
        # gene-neutral interpretation: the gene from the gene-studied component
        (
            coded("51971-0", gene="CYP2D6", valueString="Poor metabolizer"),
            APAP_CODEINE,
            "critical",
            None,
        ),
        # genotype codes: the diplotype as text (ARUP's CYP2D6 Genotype component: 40425-1)
        (coded("40425-1", valueString="*4/*4"), APAP_CODEINE, "critical", "CYP2D6 poor"),
        (
            coded("40425-1", valueCodeableConcept={"text": "CYP2D6 *1/*2x2"}),
            APAP_CODEINE,
            "critical",
            "ultrarapid",
        ),
        (coded("57132-3", valueString="*2/*2"), AMITRIPTYLINE, "warning", "CYP2C19 poor"),
        (coded("46724-1", valueString="*3/*3"), CELECOXIB, "warning", "CYP2C9 poor"),
    ],
)
def test_a_result_coded_only_with_a_gene_specific_code_gives_its_card(
    call, observation, product, indicator, summary
):
    [card] = cards(call, product, observation)
    assert card["indicator"] == indicator
    assert summary is None or summary in card["summary"]


@pytest.mark.parametrize(
    ("observation", "product"),
    [
        (coded("79715-9", valueString="Normal metabolizer"), APAP_CODEINE),
        (coded("40425-1", valueString="*1/*1"), APAP_CODEINE),
        (coded("46724-1", valueString="*1/*1"), CELECOXIB),
        (coded("40425-1", valueString="See report"), APAP_CODEINE),  # no diplotype: unclear
        (coded("51971-0", valueString="Poor metabolizer"), APAP_CODEINE),  # gene unknown
    ],
)
def test_normal_or_unreadable_results_under_those_codes_give_no_card(call, observation, product):
    assert cards(call, product, observation) == []


def test_hla_a3101_presence_code(call):
    """79712-6 HLA-A*31:01 [Presence] with a negative HLA-B*15:02 result: CPIC's avoid card;
    both negative: none."""
    b_negative = coded(
        "57979-7",
        obs_id="b",
        valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA9634-2"}]},
    )
    a_present = coded(
        "79712-6",
        obs_id="a",
        valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA9633-4"}]},
    )
    a_absent = coded("79712-6", obs_id="a", valueString="Not detected")
    [card] = cards(call, CARBAMAZEPINE, b_negative, a_present)
    assert card["indicator"] == "critical" and "HLA-A*31:01" in card["summary"]
    assert cards(call, CARBAMAZEPINE, b_negative, a_absent) == []


def explain(knowledge, settings, *observations) -> tuple[list[dict], str]:
    """The cards and what ``pgx-cds explain`` prints for a codeine order."""
    body = hook_request(
        "order-sign", [med_order(APAP_CODEINE)], prefetch=with_results(*observations)
    )
    answer, trace = Engine(knowledge, settings).evaluate(parse_hook_request(body, body["hook"]))
    return answer["cards"], trace.render()


def test_a_gene_specific_code_whose_component_names_another_gene_is_ignored(knowledge, settings):
    """A 79715-9 (CYP2D6) result whose gene-studied component says CYP2C19 is contradictory:
    it is not read as either gene, and the trace says why."""
    found, text = explain(
        knowledge, settings, coded("79715-9", gene="CYP2C19", valueString="Poor metabolizer")
    )
    assert found == []
    assert "its code is a CYP2D6 result but its gene-studied component names CYP2C19" in text


# -- the search asks for every mapped code -------------------------------------------------


def test_the_genomic_query_and_the_prefetch_template_name_every_mapped_code(knowledge):
    query = genomic_query(knowledge, "pat-1")
    template = prefetch_templates(knowledge)["genomicResults"]
    for code in knowledge.result_codes.codes:
        assert code in query and code in template, code
    for code in ("40425-1", "57132-3", "46724-1", "79715-9", "79714-2", "79716-7", "79712-6"):
        assert f"http://loinc.org|{code}" in query


def _server_filtering_by_code(*observations: dict):
    """A FHIR server's Observation search: only results whose code the search names."""

    def answer(request):
        params = parse_qs(urlsplit(request.url).query)
        asked = {c for value in params.get("code", []) for c in unquote(value).split(",")}
        found = [
            o
            for o in observations
            if any(f"{c['system']}|{c['code']}" in asked for c in o["code"]["coding"])
        ]
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(bundle(*found))

    responses.add_callback(responses.GET, SEARCH, callback=answer)


@responses.activate
def test_a_result_coded_only_with_40425_1_is_fetched_and_gives_the_card(call):
    """No prefetch: the service searches the EHR's server itself. The server answers only
    what the search names; ARUP's CYP2D6 genotype code is among them, so the result comes
    back and gives the card."""
    _server_filtering_by_code(coded("40425-1", valueString="*4/*4"))
    status, answer = call(
        hook_request("order-select", [med_order(APAP_CODEINE)], fhir_server=FHIR, token="t")
    )
    assert status == 200
    [card] = answer["cards"]
    assert card["indicator"] == "critical" and "CYP2D6 poor metabolizer" in card["summary"]
    [search] = [c for c in responses.calls if is_results_search(c.request.url)]
    assert "http://loinc.org|40425-1" in unquote(search.request.url)


@responses.activate
def test_a_result_under_a_code_the_search_does_not_name_is_not_fetched(call):
    """The negative control of the filtering server: a code nobody maps is not returned."""
    _server_filtering_by_code(coded("50398-7", valueString="*4/*4"))  # ARUP's narrative
    status, answer = call(
        hook_request("order-select", [med_order(APAP_CODEINE)], fhir_server=FHIR, token="t")
    )
    assert status == 200 and answer["cards"] == []


# -- CPIC's "Likely" and "Possible" terms -------------------------------------------------


@pytest.mark.parametrize("words", ["Likely poor metabolizer", "CYP2D6 Likely Poor Metabolizer"])
def test_likely_poor_metabolizer_acts_as_a_poor_metabolizer_with_a_note(call, words):
    [card] = cards(call, APAP_CODEINE, coded("79715-9", valueString=words))
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Avoid codeine: CYP2D6 poor metabolizer")
    assert f"the lab reported '{words}'" in card["detail"]
    assert "less certainty" in card["detail"]


def test_likely_intermediate_metabolizer_acts_as_an_intermediate_one(call):
    [card] = cards(call, CELECOXIB, coded("79716-7", valueString="Likely intermediate metabolizer"))
    plain = cards(call, CELECOXIB, coded("79716-7", valueString="Intermediate metabolizer"))
    assert card["summary"] == plain[0]["summary"] and card["indicator"] == plain[0]["indicator"]
    assert "Likely intermediate metabolizer" in card["detail"]


def test_cyp2c19_likely_keeps_cpic_s_own_likely_rows(call, knowledge):
    """For CYP2C19 CPIC has 'Likely' rows of its own: they apply, as published."""
    [card] = cards(call, AMITRIPTYLINE, coded("79714-2", valueString="Likely poor metabolizer"))
    assert card["source"]["topic"]["code"] == "amitriptyline-cyp2c19-likely-pm"
    assert "less certainty" not in card["detail"]


def test_cpic_s_likely_rows_carry_the_advice_of_the_phenotype_they_name(knowledge):
    """What the reading of 'Likely' rests on: in CPIC's own rows, 'Likely X' has X's action and
    strength, for every row that names one."""
    rows = {r.id: r for r in knowledge.recommendations}
    qualified = knowledge.result_codes.qualified_phenotypes
    checked = 0
    for row in rows.values():
        for gene, cond in row.when.items():
            if cond.phenotype in qualified:
                plain = [
                    r
                    for r in rows.values()
                    if r.drug == row.drug
                    and set(r.when) == set(row.when)
                    and r.when[gene].phenotype == qualified[cond.phenotype]
                    and all(r.when[g] == c for g, c in row.when.items() if g != gene)
                ]
                assert [(p.action, p.strength) for p in plain] == [(row.action, row.strength)]
                checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    "words", ["Possible poor metabolizer", "Possible intermediate metabolizer"]
)
def test_possible_gives_no_card_and_explain_says_why(knowledge, settings, words):
    found, text = explain(knowledge, settings, coded("79715-9", valueString=words))
    assert found == []
    assert f"'{words}' is CPIC's 'Possible" in text
    assert "uncertain or unknown function" in text and "no card" in text
