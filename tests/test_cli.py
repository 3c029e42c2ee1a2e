"""pgx-cds explain: why the service alerted or stayed silent."""

from __future__ import annotations

import json
import re

import responses
from builders import (
    APAP_CODEINE,
    bundle,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)

from cds_service.cli import main


def explain(tmp_path, capsys, body, *extra):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    code = main(["explain", str(path), *extra])
    return code, capsys.readouterr().out


def test_explain_shows_why_a_result_is_silent(tmp_path, capsys):
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch=with_results(
            phenotype_obs("Poor Metabolizer", obs_id="old-err", status="entered-in-error"),
            phenotype_obs("Poor Metabolizer", obs_id="other", patient="someone-else"),
            genotype_obs("*1/*999", obs_id="geno"),
        ),
    )
    code, out = explain(tmp_path, capsys, body)
    assert code == 0
    assert "Observation/old-err ignored: status 'entered-in-error'" in out
    assert "Observation/other ignored: its subject is not the patient in context" in out
    assert "Observation/geno (CYP2D6 genotype): no usable result" in out
    assert "CYP2D6: Indeterminate" in out
    assert "codeine: CYP2D6 result is indeterminate: no alert" in out
    assert "RxNorm 993781 contains acetaminophen, codeine" in out
    assert out.rstrip().endswith("0 card(s)")


def test_explain_shows_the_matched_recommendation(tmp_path, capsys):
    body = hook_request(
        "order-select", [med_order(APAP_CODEINE)], prefetch=with_results(genotype_obs("*1/*2x2"))
    )
    code, out = explain(tmp_path, capsys, body)
    assert code == 0
    assert "*1/*2x2, activity score 3) -> Ultrarapid Metabolizer" in out
    assert "codeine: codeine-cyp2d6-um (avoid, strong) -> alert" in out
    assert "[critical] Avoid codeine: CYP2D6 ultrarapid metabolizer" in out


def test_explain_reads_results_even_without_a_covered_drug(tmp_path, capsys):
    body = hook_request(
        "order-sign",
        [med_order(("617993", "Amoxicillin"))],
        prefetch=with_results(phenotype_obs("Poor Metabolizer")),
    )
    _, out = explain(tmp_path, capsys, body)
    assert "no drug with a pharmacogenomic recommendation" in out
    assert "CYP2D6: Poor Metabolizer" in out


@responses.activate
def test_explain_queries_a_fhir_server(tmp_path, capsys):
    fhir = "https://ehr.example.org/fhir"
    responses.get(
        re.compile(re.escape(fhir) + r"/Observation\?.*"),
        json=bundle(phenotype_obs("Ultrarapid Metabolizer")),
    )
    body = hook_request("order-select", [med_order(APAP_CODEINE)])
    code, out = explain(tmp_path, capsys, body, "--fhir", fhir, "--token", "tok")
    assert code == 0
    assert responses.calls[0].request.headers["Authorization"] == "Bearer tok"
    assert "[critical]" in out
    assert "tok" not in out


def test_explain_reports_a_bad_request(tmp_path, capsys):
    code, out = explain(tmp_path, capsys, {"hook": "order-select"})
    assert code == 1
    assert "request rejected (HTTP 400)" in out
    path = tmp_path / "broken.json"
    path.write_text("{")
    assert main(["explain", str(path)]) == 2
