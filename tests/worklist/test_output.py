"""The CSV and the HTML page: everything from the FHIR server escaped, the incomplete said."""

from __future__ import annotations

import csv
import dataclasses
import io
import re

from cds_service.worklist.judge import Row
from cds_service.worklist.output import (
    COLUMNS,
    problems_text,
    summary_line,
    to_csv,
    to_html,
    to_text,
)
from cds_service.worklist.run import Outcome
from cds_service.worklist.tasks import TaskReport

HOSTILE = "<script>alert('x')</script>\" onmouseover=\"alert(1)"


def row(**changes: str) -> Row:
    base = Row(
        indicator="critical",
        patient="Patient/p1",
        order="MedicationRequest/rx-1",
        status="active",
        order_date="2026-01-10",
        medication="tramadol hydrochloride 50 MG Oral Tablet",
        drug="tramadol",
        genes="CYP2D6",
        summary="Avoid tramadol: CYP2D6 poor metabolizer",
        advice="Recommendation (CPIC, strong): Do not prescribe tramadol.",
        detail="**Recommendation** (CPIC, strong): Do not prescribe tramadol.\n\n**Why:** …",
        result_date="2024-03-01",
        result_issued="2024-03-05T10:00:00Z",
        recommendation="tramadol-cyp2d6-pm",
        changed_since="2026-01-10",
    )
    return dataclasses.replace(base, **changes)


def outcome(*rows: Row, **more) -> Outcome:
    return Outcome(rows=list(rows), hook="order-sign", orders=3, patients=2, judged=3, **more)


def test_the_csv_has_a_header_and_a_line_per_order_and_card():
    text = to_csv(outcome(row(), row(order="MedicationRequest/rx-2", indicator="warning")))
    lines = list(csv.DictReader(io.StringIO(text)))
    assert list(lines[0]) == [header for _, header in COLUMNS]
    assert [line["order"] for line in lines] == ["MedicationRequest/rx-1", "MedicationRequest/rx-2"]
    assert lines[0]["advice"] == "Recommendation (CPIC, strong): Do not prescribe tramadol."
    assert lines[0]["result_date"] == "2024-03-01" and lines[0]["order_date"] == "2026-01-10"


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_made_text():
    for start in ('=HYPERLINK("https://evil")', "+1+1", "-2+3", "@SUM(A1)", "\t=1"):
        text = to_csv(outcome(row(medication=start, summary='a "quoted", text')))
        [line] = list(csv.DictReader(io.StringIO(text)))
        assert line["medication"] == "'" + start
        assert line["summary"] == 'a "quoted", text'  # quoting survives the round trip


def test_every_value_from_the_fhir_server_is_escaped_in_the_page():
    fields = [
        "patient",
        "order",
        "status",
        "order_date",
        "medication",
        "drug",
        "genes",
        "summary",
        "advice",
        "detail",
        "result_date",
        "result_issued",
    ]
    hostile = row(**{f: HOSTILE for f in fields})
    page = to_html(
        outcome(hostile, problems=[HOSTILE], unjudged=[(HOSTILE, HOSTILE, HOSTILE)]),
        fhir_server=f"https://ehr.example.org/{HOSTILE}",
        knowledge_version=HOSTILE,
        since=HOSTILE,
    )
    assert "<script" not in page and 'onmouseover="' not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot; onmouseover=&quot;" in page
    # scripts and outside resources are forbidden even were something missed
    assert "default-src 'none'" in page
    assert not re.search(r"<(script|img|link|iframe|object)\b", page)


def test_the_page_lists_the_rows_most_severe_first_with_a_box_to_tick():
    page = to_html(
        outcome(row(), row(indicator="warning", order="MedicationRequest/rx-2")),
        "https://ehr.example.org/fhir",
        "2026.1",
    )
    assert page.count('type="checkbox"') == 2
    assert page.index("MedicationRequest/rx-1") < page.index("MedicationRequest/rx-2")
    assert 'class="critical"' in page and 'class="warning"' in page
    assert "Incomplete" not in page
    assert "No order to review" in to_html(outcome(), "https://ehr.example.org/fhir", "2026.1")


def test_an_incomplete_run_says_so_on_the_page_in_the_summary_and_on_stderr():
    done = outcome(
        row(),
        problems=["MedicationRequest by code (1/5): the FHIR server could not be read"],
        unjudged=[
            ("Patient/secret-p", "MedicationRequest/secret-o", "the FHIR server could not be read")
        ]
        * 2,
        tasks=TaskReport(written=1, failed=["a Task could not be written (500)"]),
    )
    page = to_html(done, "https://ehr.example.org/fhir", "2026.1")
    assert "Incomplete:" in page and "could not be judged" in page
    assert summary_line(done).endswith("INCOMPLETE")
    problems = problems_text(done)
    assert "2 order(s) could not be judged: the FHIR server could not be read" in problems
    assert "a Task could not be written (500)" in problems
    assert not any("secret" in p for p in problems)  # stderr: no patient, no order


def test_the_summary_counts_without_naming_anyone():
    line = summary_line(outcome(row(), row(order="MedicationRequest/rx-2"), pages=7))
    assert line == (
        "2 order(s) of 1 patient(s) to review (3 of 3 orders of 2 patients judged, 7 pages read)"
    )
    assert "Patient/" not in line


def test_the_listing_shows_each_order_and_its_card():
    text = to_text(outcome(row()))
    assert text.splitlines()[0] == (
        "[critical] Patient/p1  MedicationRequest/rx-1 (active, written 2026-01-10)"
    )
    assert "tramadol hydrochloride 50 MG Oral Tablet: CYP2D6 (result of 2024-03-01)" in text
    assert to_text(outcome()) == ""
