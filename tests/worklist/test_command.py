"""``pgx-cds worklist``: its options, what it prints where, its files and exit codes."""

from __future__ import annotations

import csv
import json
import stat

import pytest
from builders import phenotype_obs
from conftest import BASE, TOKEN, order, patient

from cds_service.cli import main

TRAMADOL = ("835603", "tramadol hydrochloride 50 MG Oral Tablet")
CODEINE = ("993781", "Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet")


@pytest.fixture
def seeded(fhir, monkeypatch):
    monkeypatch.setenv("PGX_CDS_FHIR_TOKEN", TOKEN)
    fhir.add(
        patient("secret-pm"),
        phenotype_obs("Poor Metabolizer", patient="secret-pm", obs_id="pm"),
        order("secret-order", "secret-pm", TRAMADOL),
        patient("secret-nm"),
        phenotype_obs("Normal Metabolizer", patient="secret-nm", obs_id="nm"),
        order("nm-order", "secret-nm", CODEINE),
    )
    return fhir


def worklist(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["worklist", "--fhir-server", BASE, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_list_goes_to_stdout_and_progress_to_stderr_without_a_patient(seeded, capsys):
    code, out, err = worklist(capsys)
    assert code == 0
    assert out.splitlines()[0] == (
        "[critical] Patient/secret-pm  MedicationRequest/secret-order (active, written 2026-01-10)"
    )
    assert "nm-order" not in out
    assert out.splitlines()[-1].startswith("1 order(s) of 1 patient(s) to review (2 of 2 orders")
    assert "worklist: 2 orders of 2 patients to judge (order-sign)" in err
    assert "secret" not in err and TOKEN not in out + err
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in seeded.requests)
    # and it wrote nothing
    assert [r for r in seeded.requests if r.method != "GET"] == []


def test_the_files_hold_the_list_for_the_pharmacist_only(seeded, capsys, tmp_path):
    table, page = tmp_path / "w.csv", tmp_path / "w.html"
    code, out, err = worklist(capsys, "--csv", str(table), "--html", str(page), "--quiet")
    assert code == 0 and err == ""
    assert "secret" not in out  # with files, stdout has only the counts
    [line] = list(csv.DictReader(table.open(encoding="utf-8")))
    assert (line["patient"], line["order"]) == (
        "Patient/secret-pm",
        "MedicationRequest/secret-order",
    )
    assert "Patient/secret-pm" in page.read_text(encoding="utf-8")
    for path in (table, page):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.csv", "w.html"]  # no leftovers


def test_the_token_can_come_from_a_file(seeded, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("PGX_CDS_FHIR_TOKEN")
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    code, _, _ = worklist(capsys, "--token-file", str(secret), "--quiet")
    assert code == 0
    assert {r.headers["Authorization"] for r in seeded.requests} == {"Bearer from-a-file"}


def test_tasks_are_written_only_when_asked(seeded, capsys):
    code, out, _ = worklist(capsys, "--task", "--quiet")
    assert code == 0 and "Tasks: 1 written, 0 already there" in out
    [post] = [r for r in seeded.requests if r.method == "POST"]
    assert json.loads(post.body)["focus"] == {"reference": "MedicationRequest/secret-order"}


def test_a_failed_search_makes_the_run_incomplete_yet_writes_what_it_found(
    seeded, capsys, tmp_path
):
    seeded.fail = lambda url: 500 if "/MedicationStatement?" in url else None
    table = tmp_path / "w.csv"
    code, out, err = worklist(capsys, "--csv", str(table), "--quiet")
    assert code == 1
    assert out.rstrip().endswith("INCOMPLETE")
    assert "worklist: incomplete: MedicationStatement by code" in err
    assert len(list(csv.DictReader(table.open(encoding="utf-8")))) == 1


def test_a_run_out_of_time_is_incomplete(seeded, capsys):
    code, _, err = worklist(capsys, "--budget", "0.000001", "--quiet")
    assert code == 1 and "time budget (--budget) is spent" in err


def test_since_lists_only_orders_or_results_that_are_new(seeded, capsys):
    code, out, _ = worklist(capsys, "--since", "2026-02-01", "--quiet")
    assert code == 0 and out.startswith("0 order(s)")
    code, out, _ = worklist(capsys, "--since", "2026-01-10", "--quiet")
    assert code == 0 and "MedicationRequest/secret-order" in out


def test_a_silent_drug_is_not_listed(seeded, capsys, tmp_path, monkeypatch):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"drugs": {"tramadol": "silent"}}))
    monkeypatch.setenv("PGX_CDS_SITE_CONFIG", str(site))
    code, out, _ = worklist(capsys, "--quiet")
    assert code == 0 and out.startswith("0 order(s)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last week"], "--since 'last week': not a date"),
        (["--since", "2026-01-01T10:00"], "not a date"),  # a time needs its zone
        (["--budget", "0"], "--budget 0.0: must be more than 0 seconds"),
        (["--max-pages", "0"], "--max-pages 0: must be at least 1"),
        (["--csv", "/no/such/folder/w.csv"], "no such folder /no/such/folder"),
    ],
)
def test_options_that_cannot_work_stop_before_any_read(fhir, capsys, args, message):
    code, _, err = worklist(capsys, *args)
    assert code == 2 and message in err
    assert fhir.requests == []


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("http://169.254.169.254/fhir", "not one this service may query"),
        ("ftp://ehr.example.org/fhir", "must be an http(s) URL"),
        ("https://user@ehr.example.org/fhir", "no user info"),
    ],
)
def test_the_fhir_server_is_checked_as_a_hook_request_s_is(fhir, capsys, server, message):
    code = main(["worklist", "--fhir-server", server])
    assert code == 2 and message in capsys.readouterr().err
    assert fhir.requests == []


def test_the_allow_list_of_fhir_servers_applies(fhir, capsys, monkeypatch):
    monkeypatch.setenv("PGX_CDS_FHIR_SERVERS", "https://other.example.org/fhir")
    code, _, err = worklist(capsys)
    assert code == 2 and "PGX_CDS_FHIR_SERVERS" in err
    monkeypatch.setenv("PGX_CDS_FHIR_SERVERS", BASE)
    assert worklist(capsys, "--quiet")[0] == 0


def test_the_budget_and_page_bound_come_from_settings_unless_given(fhir, capsys, monkeypatch):
    seen = {}

    def run(engine, server, token, **options):
        seen.update(options)
        from cds_service.worklist.run import Outcome

        return Outcome(hook="order-sign")

    monkeypatch.setattr("cds_service.worklist.command.run", run)
    monkeypatch.setenv("PGX_CDS_WORKLIST_BUDGET", "600")
    monkeypatch.setenv("PGX_CDS_WORKLIST_MAX_PAGES", "7")
    worklist(capsys)
    assert (seen["budget"], seen["max_pages"], seen["tasks"]) == (600.0, 7, False)
    worklist(capsys, "--budget", "30", "--max-pages", "3")
    assert (seen["budget"], seen["max_pages"]) == (30.0, 3)


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["worklist", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--fhir-server",
        "--since",
        "--csv",
        "--html",
        "--task",
        "--budget",
        "--max-pages",
        "--token-file",
        "--quiet",
    ):
        assert option in text


def test_an_order_that_breaks_the_service_is_unjudged_and_the_others_go_on(
    seeded, capsys, monkeypatch
):
    from cds_service.pipeline import Engine

    real = Engine.evaluate

    def fails_for_one(self, request, **kwargs):
        if request.patient_id == "secret-nm":
            raise RuntimeError("a bug, with secret-nm in its message")
        return real(self, request, **kwargs)

    monkeypatch.setattr(Engine, "evaluate", fails_for_one)
    code, out, err = worklist(capsys, "--quiet")
    assert code == 1 and "MedicationRequest/secret-order" in out
    assert "not judged: Patient/secret-nm  MedicationRequest/nm-order" in out
    assert (
        "1 order(s) could not be judged: an unexpected error in the service (RuntimeError)" in err
    )
    assert "secret" not in err
