"""The same underlying result, whatever its shape, gives the same card.

Each shape follows the HL7 Genomics Reporting IG examples (STU1 53040-2 phenotype, the 2.0
``predicted-therapeutic-implication`` form, the 3.0+ ``therapeutic-implication`` form reached
through ``derivedFrom``, Genotype 84413-4 with PharmVar codings, Haplotype 84414-2 pairs) and
common lab variants (gene in text, HGNC under either system, a site's local code).
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import responses
from builders import (
    APAP_CODEINE,
    LOINC,
    PATIENT,
    RXNORM,
    TBD,
    bundle,
    gene_component,
    genotype_obs,
    hook_request,
    implication_obs,
    med_order,
    phenotype_obs,
)

from cds_service.web.app import create_app

GE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "GE"}]}
LAB = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}
PHARMVAR = "http://www.pharmvar.org"


def ig_observation(obs_id: str, code: dict, **fields) -> dict:
    """An Observation laid out like the IG's examples (categories, dates, performer)."""
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "category": [LAB, GE],
        "code": code,
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": "2018",
        "issued": "2018-03-06T00:00:00-05:00",
        "performer": [{"reference": "Organization/ExampleLab"}],
        **fields,
    }


def hgnc_v3(gene: str) -> dict:
    comp = gene_component(gene)
    comp["valueCodeableConcept"]["coding"][0]["system"] = "http://www.genenames.org"
    return comp


def genotype_ig(obs_id="genotype-pgx-example"):
    # bundle-pgxexample: valueCodeableConcept = $PHARMVAR#CYP2C9 "CYP2C9 *4/*35B", here CYP2D6
    return ig_observation(
        obs_id,
        {"coding": [{"system": LOINC, "code": "84413-4", "display": "Genotype display name"}]},
        valueCodeableConcept={
            "coding": [{"system": PHARMVAR, "code": "CYP2D6", "display": "CYP2D6 *4/*4"}]
        },
        derivedFrom=[
            {"reference": "Observation/haplotype-1-pgx-example"},
            {"reference": "Observation/haplotype-2-pgx-example"},
        ],
        component=[hgnc_v3("CYP2D6")],
    )


def haplotype_ig(obs_id, allele):
    return ig_observation(
        obs_id,
        {"coding": [{"system": LOINC, "code": "84414-2", "display": "Haplotype Name"}]},
        valueCodeableConcept={
            "coding": [{"system": PHARMVAR, "code": "PV00000", "display": f"CYP2D6{allele}"}]
        },
        component=[gene_component("CYP2D6")],
    )


def implication_v3(derived_from="Observation/genotype-pgx-example"):
    # med-impact-pgx-example: no gene component; the gene is on the genotype it derives from
    return ig_observation(
        "med-impact-pgx-example",
        {"coding": [{"system": TBD, "code": "therapeutic-implication"}]},
        derivedFrom=[{"reference": derived_from}],
        component=[
            {
                "code": {"coding": [{"system": TBD, "code": "therapeutic-implication"}]},
                "valueCodeableConcept": {
                    "coding": [{"system": LOINC, "code": "LA9657-3", "display": "Poor metabolizer"}]
                },
            },
            {
                "code": {
                    "coding": [
                        {"system": LOINC, "code": "51963-7", "display": "Medication assessed"}
                    ]
                },
                "valueCodeableConcept": {
                    "coding": [{"system": RXNORM, "code": "2670", "display": "codeine"}]
                },
            },
        ],
    )


def phenotype_gene_in_code_text():
    obs = phenotype_obs("Poor metabolizer", as_text=True)
    obs.pop("component")
    obs["code"]["text"] = "CYP2D6 phenotype"
    return obs


def genotype_gene_in_value():
    return genotype_obs("CYP2D6 *4/*4", gene=None, where="valueString")


REPRESENTATIONS = {
    "stu1 phenotype, LOINC answer": [phenotype_obs("Poor Metabolizer")],
    "stu1 phenotype, text answer, gene in code text": [phenotype_gene_in_code_text()],
    "2.0 predicted-therapeutic-implication": [
        implication_obs("Poor Metabolizer", component_code="predicted-therapeutic-implication")
    ],
    "3.0 therapeutic-implication via derivedFrom": [implication_v3(), genotype_ig()],
    "genotype, PharmVar coding, HGNC v3 system": [genotype_ig()],
    "genotype, text without gene prefix": [genotype_obs("*4/*4")],
    "genotype, valueString, gene only in the value": [genotype_gene_in_value()],
    "genotype, PharmVar suballeles": [genotype_obs("CYP2D6*4.001/CYP2D6*4.001", where="display")],
    "haplotype pair": [
        haplotype_ig("haplotype-1-pgx-example", "*4"),
        haplotype_ig("haplotype-2-pgx-example", "*4.001"),
    ],
}


@pytest.mark.parametrize("name", list(REPRESENTATIONS))
def test_same_card_whatever_the_shape(call, name):
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch={"genomicResults": bundle(*REPRESENTATIONS[name])},
    )
    status, answer = call(body)
    assert status == 200
    [card] = answer["cards"]
    assert card["summary"] == "Avoid codeine: CYP2D6 poor metabolizer"
    assert card["indicator"] == "critical"


@responses.activate
def test_implication_whose_genotype_must_be_fetched(call):
    fhir = "https://ehr.example.org/fhir"
    responses.get(f"{fhir}/Observation/genotype-pgx-example", json=genotype_ig())
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        fhir_server=fhir,
        token="t",
        prefetch={"genomicResults": bundle(implication_v3())},
    )
    [card] = call(body)[1]["cards"]
    assert card["summary"] == "Avoid codeine: CYP2D6 poor metabolizer"
    assert responses.calls[0].request.headers["Authorization"] == "Bearer t"


def test_implication_gene_from_derived_from_display(call):
    impl = implication_v3("Observation/not-sent")
    impl["derivedFrom"][0]["display"] = "CYP2D6*4/*4"
    [card] = call(
        hook_request(
            "order-select", [med_order(APAP_CODEINE)], prefetch={"genomicResults": bundle(impl)}
        )
    )[1]["cards"]
    assert "poor metabolizer" in card["summary"]


def test_one_haplotype_alone_is_not_a_diplotype(call):
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch={"genomicResults": bundle(haplotype_ig("h1", "*4"))},
    )
    assert call(body) == (200, {"cards": []})


def test_ig_cyp2c9_example_genotype(call):
    """The IG's own genotype: PharmVar 'CYP2C9 *4/*35B' (*4 = 0.5, *35 = 0: poor metabolizer)."""
    geno = genotype_ig()
    geno["valueCodeableConcept"] = {
        "coding": [{"system": PHARMVAR, "code": "CYP2C9", "display": "CYP2C9 *4/*35B"}]
    }
    geno["component"] = [hgnc_v3("CYP2C9")]
    celecoxib = ("205323", "celecoxib 200 MG Oral Capsule")
    [card] = call(
        hook_request(
            "order-sign", [med_order(celecoxib)], prefetch={"genomicResults": bundle(geno)}
        )
    )[1]["cards"]
    assert card["summary"] == "Adjust celecoxib dose: CYP2C9 poor metabolizer"
    assert "activity score 0.5" in card["detail"]


# -- site mapping of local codes ------------------------------------------------------------

SITE_CODES = {
    "codes": {
        "http://lab.example.org/codes|PGX-2D6-PHENO": {"kind": "phenotype", "gene": "CYP2D6"},
        "http://lab.example.org/codes|PGX-B1502": {"kind": "presence", "marker": "HLA-B*15:02"},
    }
}


@pytest.fixture
def site_client(tmp_path, settings):
    path = tmp_path / "site-codes.json"
    path.write_text(json.dumps(SITE_CODES))
    app = create_app(settings.model_copy(update={"site_codes": path}))
    return app.test_client()


def local(code: str, value: dict) -> dict:
    return ig_observation(
        "local-1",
        {"coding": [{"system": "http://lab.example.org/codes", "code": code}]},
        valueCodeableConcept=value,
    )


def test_site_local_codes_are_read(site_client):
    pheno = local("PGX-2D6-PHENO", {"text": "Poor metabolizer"})
    body = hook_request(
        "order-select", [med_order(APAP_CODEINE)], prefetch={"genomicResults": bundle(pheno)}
    )
    [card] = site_client.post("/cds-services/pgx-order-select", json=body).get_json()["cards"]
    assert card["summary"] == "Avoid codeine: CYP2D6 poor metabolizer"

    presence = local(
        "PGX-B1502", {"coding": [{"system": LOINC, "code": "LA9633-4", "display": "Present"}]}
    )
    body = hook_request(
        "order-sign",
        [med_order(("308979", "Carbamazepine 200 MG Oral Tablet"))],
        prefetch={"genomicResults": bundle(presence)},
    )
    [card] = site_client.post("/cds-services/pgx-order-sign", json=body).get_json()["cards"]
    assert card["indicator"] == "critical"


def test_site_codes_join_the_prefetch_query(site_client):
    template = site_client.get("/cds-services").get_json()["services"][0]["prefetch"][
        "genomicResults"
    ]
    assert "http://lab.example.org/codes|PGX-2D6-PHENO" in template
    assert "http://loinc.org|84413-4" in template


def test_without_site_mapping_local_codes_are_ignored(call):
    pheno = local("PGX-2D6-PHENO", {"text": "Poor metabolizer"})
    body = hook_request(
        "order-select", [med_order(APAP_CODEINE)], prefetch={"genomicResults": bundle(pheno)}
    )
    assert call(body) == (200, {"cards": []})


def test_example_site_codes_file_is_valid(tmp_path, settings):
    from cds_service.settings import default_knowledge_dir

    example = default_knowledge_dir() / "site-codes.example.json"
    app = create_app(settings.model_copy(update={"site_codes": example}))
    codes = app.extensions["pgx"].knowledge.result_codes.codes
    assert any(code.startswith("http://lab.example.org/") for code in codes)


def test_fixtures_are_valid_fhir_r4():
    """Our test shapes are real FHIR R4, not shapes only our parser accepts."""
    from fhir.resources.R4B.observation import Observation

    for observations in REPRESENTATIONS.values():
        for obs in observations:
            data = copy.deepcopy(obs)
            if re.fullmatch(r"\d{4}", data.get("effectiveDateTime", "")):
                data["effectiveDateTime"] += "-01-01"
            Observation.model_validate(data)
