"""The committee's HTML report as a P&T committee reads it: consistent gene labels, a row per
recommendation, the denominator, patient-view cards, and a page that fits a 1,400-pixel-wide
window without scrolling sideways, measured in a headless browser (Debian's chromium; the
test skips, saying so, where it is not installed). Set PGX_CDS_KEEP_SCREENSHOT to a folder to keep
the screenshot for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from cds_service.governance.report import build, text
from cds_service.governance.report_page import html_page
from cds_service.store import schema
from cds_service.store.feedback import FeedbackStore
from cds_service.store.tables import card_log_table, hook_calls_table

DAY = datetime(2026, 10, 6, 9, tzinfo=UTC)
#: (recommendation id, drug, genes as the card log has them, indicator, cards, shown)
LOGGED = [
    ("codeine-cyp2d6-um", "codeine", "CYP2D6", "critical", 12, True),
    ("codeine-cyp2d6-pm", "codeine", "CYP2D6", "warning", 9, True),
    ("codeine-cyp2d6-im", "codeine", "CYP2D6", "info", 4, False),
    ("tramadol-cyp2d6-um", "tramadol", "CYP2D6", "critical", 6, True),
    (
        "amitriptyline-cyp2d6-um-cyp2c19-likely-im",
        "amitriptyline",
        "CYP2D6/CYP2C19",
        "critical",
        2,
        True,
    ),
    ("celecoxib-cyp2c9-as1", "celecoxib", "CYP2C9", "warning", 7, False),
    ("carbamazepine-hlab1502-pos", "carbamazepine", "HLA-B*15:02", "critical", 1, True),
    # how earlier versions logged a pre-test card and an age rule: the test's name, "-"
    ("codeine-pretest-CYP2D6", "codeine", "CYP2D6 genotyping", "info", 3, True),
    (
        "carbamazepine-pretest-HLA-B*15:02",
        "carbamazepine",
        "HLA-B*15:02 [Presence] in Blood or Tissue by Molecular genetics method",
        "info",
        5,
        True,
    ),
    ("codeine-under-12", "codeine", "-", "critical", 1, True),
    ("patient-view-summary", "patient-view", "CYP2C9/CYP2D6", "info", 40, True),
]


@pytest.fixture
def report(settings, knowledge):
    store = FeedbackStore(settings.database_url)
    schema.upgrade(store.engine)
    rows, n = [], 0
    for rec, drug, genes, indicator, count, shown in LOGGED:
        for i in range(count):
            n += 1
            rows.append(
                {
                    "card_uuid": f"card-{n}",
                    "issued_at": DAY + timedelta(days=i % 20, minutes=n),
                    "hook": "patient-view" if drug == "patient-view" else "order-select",
                    "service_id": "pgx-order-select",
                    "drug": drug,
                    "genes": genes,
                    "phenotype": "CYP2D6 Ultrarapid Metabolizer",
                    "recommendation_id": rec,
                    "indicator": indicator,
                    "knowledge_version": knowledge.version,
                    "shown": shown,
                    "patient_hash": f"{n % 17:064d}",
                    "order_hash": f"{n:064d}",
                }
            )
    with store.engine.begin() as conn:
        conn.execute(insert(card_log_table), rows)
        conn.execute(
            insert(hook_calls_table),
            [
                {"hour": DAY, "hook": "order-select", "service_id": "pgx-order-select",
                 "drug": drug, "calls": calls, "orders": orders}
                for drug, calls, orders in [("", 4000, 9000), ("codeine", 900, 1000),
                                            ("tramadol", 400, 450), ("amitriptyline", 90, 90),
                                            ("celecoxib", 300, 300), ("carbamazepine", 60, 60)]
            ]
            + [{"hour": DAY, "hook": "patient-view", "service_id": "pgx-patient-view",
                "drug": "", "calls": 2000, "orders": 0}],
        )  # fmt: skip
    return build(store.engine, DAY.date(), DAY.date() + timedelta(days=30), knowledge)


def test_gene_labels_are_the_knowledges_for_every_kind_of_card(report):
    genes = {g.recommendation: g.genes for g in report.by_recommendation}
    assert genes["codeine-pretest-CYP2D6"] == "CYP2D6"  # not "CYP2D6 genotyping"
    assert genes["carbamazepine-pretest-HLA-B*15:02"] == "HLA-B*15:02"  # not the LOINC name
    assert genes["codeine-under-12"] == ""  # an age rule: no gene, not "-"
    assert genes["amitriptyline-cyp2d6-um-cyp2c19-likely-im"] == "CYP2D6/CYP2C19"
    findings = {g.recommendation: (g.finding, g.advice) for g in report.by_recommendation}
    assert findings["codeine-cyp2d6-um"] == ("Ultrarapid Metabolizer", "avoid")
    assert findings["codeine-pretest-CYP2D6"] == ("no result on file", "order the test")
    assert findings["codeine-under-12"][0] == "age under 12"
    assert findings["patient-view-summary"][1] == "profile card"


def test_each_recommendation_has_its_own_row_and_rate(report):
    codeine = [g for g in report.by_recommendation if g.drug == "codeine"]
    assert len(codeine) == 5  # UM, PM, IM, pre-test, age: never mixed
    by_id = {g.recommendation: g for g in codeine}
    assert by_id["codeine-cyp2d6-um"].per_1000 == pytest.approx(12.0)  # 12 of 1,000 orders
    (profile,) = [g for g in report.by_recommendation if g.drug == "patient-view"]
    assert (profile.issued, profile.orders, profile.per_1000) == (40, 2000, pytest.approx(20.0))
    assert "patient-view" in text(report)


@pytest.mark.skipif(
    not shutil.which("chromium"),
    reason="the screenshot test needs Debian's chromium (apt-get install chromium)",
)
def test_the_page_fits_1400_pixels_without_scrolling_sideways(report, tmp_path):
    page = html_page(report)
    measured = page.replace(
        "</body>",
        "<script>document.body.setAttribute('data-fit', document.documentElement.scrollWidth"
        " + 'x' + document.documentElement.clientWidth)</script></body>",
    )
    path = tmp_path / "report.html"
    path.write_text(measured, encoding="utf-8")
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800"]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found = re.search(r'data-fit="(\d+)x(\d+)"', dom)
    assert found, dom[:500]
    scroll, client = int(found.group(1)), int(found.group(2))
    assert client >= 1380  # the window is what the test asked for
    assert scroll <= client, f"the page is {scroll} px wide in a {client} px window"
    screenshot = tmp_path / "report-1400.png"
    subprocess.run(
        ["chromium", *flags, f"--screenshot={screenshot}", path.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert screenshot.stat().st_size > 20_000  # tables and charts were drawn
    if keep := os.environ.get("PGX_CDS_KEEP_SCREENSHOT"):  # a folder: the picture to look at
        shutil.copy(screenshot, Path(keep) / "report-1400.png")
