"""``--task``: one Task per order and advice for the pharmacist, never twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from conftest import BASE, TOKEN
from test_output import row
from test_reader import reader

from cds_service.worklist.tasks import SYSTEM, identifier, task, write_tasks

NOW = datetime(2026, 2, 1, 6, 0, tzinfo=UTC)


def _posts(fhir) -> list:
    return [r for r in fhir.requests if r.method == "POST"]


def test_a_task_asks_a_pharmacist_to_review_the_order():
    written = task(row(), NOW)
    assert written["resourceType"] == "Task"
    assert written["identifier"] == [
        {"system": SYSTEM, "value": "MedicationRequest/rx-1:tramadol-cyp2d6-pm"}
    ]
    assert (written["status"], written["intent"], written["priority"]) == (
        "requested",
        "proposal",
        "urgent",
    )
    assert written["focus"] == {"reference": "MedicationRequest/rx-1"}
    assert written["for"] == {"reference": "Patient/p1"}
    assert written["performerType"][0]["coding"][0]["code"] == "46255001"  # Pharmacist
    assert written["description"] == "Avoid tramadol: CYP2D6 poor metabolizer"
    assert written["note"] == [{"text": row().advice}]
    assert written["authoredOn"] == "2026-02-01T06:00:00Z"
    assert task(row(indicator="warning"), NOW)["priority"] == "routine"


def test_each_order_and_advice_gets_one_task_and_a_rerun_writes_none(fhir, engine):
    rows = [row(), row(), row(order="MedicationRequest/rx-2", indicator="warning")]
    first = write_tasks(reader(engine), rows, NOW)
    assert (first.written, first.existing, first.failed) == (2, 0, [])
    posts = _posts(fhir)
    assert [p.url for p in posts] == [f"{BASE}/Task", f"{BASE}/Task"]
    for post in posts:
        assert post.headers["Authorization"] == f"Bearer {TOKEN}"
        assert post.headers["Content-Type"] == "application/fhir+json"
        assert post.headers["If-None-Exist"].startswith("identifier=urn:pgx-pain-cds:worklist-task")
    again = write_tasks(reader(engine), rows, NOW)
    assert (again.written, again.existing) == (0, 2)
    assert len(_posts(fhir)) == 2  # nothing more was written
    tasks = [r for r in fhir.resources if r["resourceType"] == "Task"]
    assert sorted(t["identifier"][0]["value"] for t in tasks) == sorted(
        {identifier(r) for r in rows}
    )


def test_a_task_the_pharmacist_closed_is_not_raised_again(fhir, engine):
    closed = {**task(row(), NOW), "id": "t1", "status": "completed"}
    fhir.add(closed)
    report = write_tasks(reader(engine), [row()], NOW)
    assert (report.written, report.existing) == (0, 1) and _posts(fhir) == []


def test_a_new_advice_on_the_same_order_is_a_new_task(fhir, engine):
    fhir.add({**task(row(), NOW), "id": "t1"})
    newer = row(recommendation="tramadol-cyp2d6-um", summary="Avoid tramadol: ultrarapid")
    assert write_tasks(reader(engine), [newer], NOW).written == 1


def test_a_conditional_create_that_finds_one_counts_as_already_there(fhir, engine, monkeypatch):
    # the search does not see it (written meanwhile), the conditional create does
    monkeypatch.setattr("cds_service.worklist.tasks._existing", lambda reader, values: set())
    fhir.add({**task(row(), NOW), "id": "t1"})
    report = write_tasks(reader(engine), [row()], NOW)
    assert (report.written, report.existing) == (0, 1)


def test_a_write_that_fails_is_counted_without_naming_the_patient(fhir, engine):
    fhir.fail = lambda url: 500 if url == f"{BASE}/Task" else None
    report = write_tasks(reader(engine), [row(patient="Patient/secret-9")], NOW)
    assert report.written == 0 and report.failed == ["a Task could not be written (500)"]


def test_tasks_are_not_written_when_the_existing_ones_cannot_be_read(fhir, engine):
    fhir.fail = lambda url: 503 if "/Task?" in url else None
    report = write_tasks(reader(engine), [row()], NOW)
    assert report.written == 0 and _posts(fhir) == []
    assert report.failed and "existing ones could not be read" in report.failed[0]


def test_the_identifier_search_escapes_what_fhir_search_would_split_on(fhir, engine):
    odd = row(order="MedicationRequest/a,b|c")
    write_tasks(reader(engine), [odd], NOW)
    [search] = [r.url for r in fhir.requests if "/Task?" in r.url]
    assert "a%5C%2Cb%5C%7Cc" in search  # a\,b\|c: one value, not three
    [post] = _posts(fhir)
    assert (
        json.loads(post.body)["identifier"][0]["value"]
        == "MedicationRequest/a,b|c:tramadol-cyp2d6-pm"
    )
