"""pgx-cds explain: why the service alerted or stayed silent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
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
    assert "codeine: CYP2D6 result is indeterminate: no guideline row applies" in out
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


def test_explain_shows_each_suggestion_offered_or_not_and_why(tmp_path, capsys):
    body = hook_request(
        "order-select", [med_order(APAP_CODEINE)], prefetch=with_results(genotype_obs("*1/*2x2"))
    )
    _, out = explain(tmp_path, capsys, body)
    assert (
        "[suggestions] codeine: offered 'Replace with Acetaminophen 325 MG Oral Tablet alone "
        "(set dose); a non-opioid option'" in out
    )
    assert (
        "[suggestions] codeine: Morphine Sulfate 15 MG Oral Tablet is not offered: 15 MME per "
        "tablet, stronger than the ordered dose (4.5 MME; CDC 2022 factors)" in out
    )


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


@responses.activate
@pytest.mark.parametrize("way", ["file", "environment"])
def test_the_token_comes_from_a_file_or_the_environment_not_only_the_command_line(
    tmp_path, capsys, monkeypatch, way
):
    """A token on the command line shows in ``ps``: a mounted secret file or an environment
    variable keep it out (and win over ``--token``)."""
    fhir = "https://ehr.example.org/fhir"
    responses.get(
        re.compile(re.escape(fhir) + r"/Observation\?.*"),
        json=bundle(phenotype_obs("Ultrarapid Metabolizer")),
    )
    body = hook_request("order-select", [med_order(APAP_CODEINE)])
    extra = ["--fhir", fhir, "--token", "from-the-command-line"]
    if way == "file":
        secret = tmp_path / "token"
        secret.write_text("from-the-file\n")
        extra += ["--token-file", str(secret)]
        wanted = "from-the-file"
    else:
        monkeypatch.setenv("PGX_CDS_FHIR_TOKEN", "from-the-environment")
        wanted = "from-the-environment"
    code, out = explain(tmp_path, capsys, body, *extra)
    assert code == 0 and "[critical]" in out
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {wanted}"


def test_an_unreadable_token_file_is_one_line_naming_it(tmp_path, capsys):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(hook_request("order-select", [med_order(APAP_CODEINE)])))
    assert main(["explain", str(path), "--token-file", str(tmp_path / "missing")]) == 2
    assert "cannot read --token-file" in capsys.readouterr().err


def test_version_names_the_package_and_its_knowledge(capsys):
    from cds_service import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pgx-cds {__version__} (knowledge ") and out.strip().endswith(")")


def test_the_packaged_sandbox_requests_are_listed_printed_and_explained(capsys):
    """From a wheel there is no sandbox/ folder to browse: the command lists what ships."""
    assert main(["sandbox", "requests"]) == 0
    listing = capsys.readouterr().out
    assert "order-select-pgx-cyp2d6-um-codeine\n    [critical] Avoid codeine" in listing
    assert main(["sandbox", "request", "order-select-pgx-cyp2d6-um-codeine"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["hook"] == "order-select" and printed["prefetch"]
    assert main(["explain", "order-select-pgx-cyp2d6-um-codeine"]) == 0
    assert "[critical] Avoid codeine" in capsys.readouterr().out
    assert main(["sandbox", "request", "no-such-request"]) == 2
    assert "no packaged sandbox request" in capsys.readouterr().err


def test_every_positional_choice_is_explained_in_help(capsys):
    for command, words in (("db", ["upgrade:", "current:"]), ("knowledge", ["check:", "list:"])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(w in text for w in words), (command, text)
    with pytest.raises(SystemExit):
        main(["sandbox", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(w in text for w in ("load:", "requests:", "request NAME:"))


def test_output_piped_into_a_reader_that_stops_ends_without_a_traceback():
    """``pgx-cds knowledge list | head -1``: the reader goes away; no traceback follows."""
    script = Path(sys.executable).parent / "pgx-cds"
    run = subprocess.Popen(
        [str(script), "knowledge", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()  # before it writes: every write finds the pipe closed
    errors = run.stderr.read().decode()
    run.wait(timeout=30)
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
