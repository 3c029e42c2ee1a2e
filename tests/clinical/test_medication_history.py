"""Reading the patient's medication records: which are taken now, which ended and when, since
when a drug has been taken (issue 22, items 2 and 7)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from builders import med_order, med_statement

from cds_service.clinical.medication_history import (
    LISTED,
    ON_FILE,
    SESSION,
    MedicationHistory,
    history,
    read_use,
    therapies,
)
from cds_service.core.trace import Trace
from cds_service.fhir.hook_context import DraftOrder

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FLUOXETINE = ("310385", "Fluoxetine 20 MG Oral Capsule")
CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")


def use_of(resource: dict, source: str = LISTED):
    return read_use(DraftOrder(resource), source, NOW)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("active", "current"),
        ("intended", "current"),
        ("on-hold", "current"),
        ("unknown", "current"),
        ("stopped", "ended"),
        ("completed", "ended"),
        ("entered-in-error", "not counted"),
        ("not-taken", "not counted"),
    ],
)
def test_each_statement_status_is_read(status, state):
    use = use_of(med_statement(FLUOXETINE, status=status))
    assert use.state == state
    assert use.why  # the trace and the card say why


def test_an_unknown_status_is_counted_and_says_so():
    use = use_of(med_statement(FLUOXETINE, status="unknown"))
    assert use.state == "current" and "unknown" in use.why


@pytest.mark.parametrize(
    "older",
    [{"taken": "n"}, {"wasNotTaken": True}],
    ids=["STU3 taken n", "DSTU2 wasNotTaken"],
)
def test_older_versions_saying_not_taken_are_not_counted(older):
    use = use_of(med_statement(FLUOXETINE, **older))
    assert use.state == "not counted" and "not taken" in use.why


@pytest.mark.parametrize(
    ("adherence", "state"),
    [("taking", "current"), ("on-hold-as-directed", "current"), ("stopped", "ended")],
)
def test_r5_statements_are_read_from_their_adherence(adherence, state):
    statement = med_statement(None, status="recorded")
    statement["medication"] = {"concept": {"text": "fluoxetine 20 mg"}}
    statement["adherence"] = {"code": {"coding": [{"code": adherence}]}}
    assert use_of(statement).state == state
    statement["adherence"] = {"code": {"coding": [{"code": "not-taking"}]}}
    assert use_of(statement).state == "not counted"


def test_a_stopped_statement_ends_on_its_period_end():
    use = use_of(med_statement(FLUOXETINE, status="stopped", effectivePeriod={"end": "2026-11-20"}))
    assert use.state == "ended" and use.ended_text == "2026-11-20"
    # a date without a time lasts to the end of that day
    assert use.ended == datetime(2026, 11, 21, tzinfo=UTC)


def test_a_stopped_statement_without_an_end_ended_on_or_before_it_was_asserted():
    use = use_of(med_statement(FLUOXETINE, status="stopped", dateAsserted="2026-11-25"))
    assert use.state == "ended" and use.ended_text == "on or before 2026-11-25"


def test_a_stopped_order_without_a_past_end_ended_on_or_before_its_last_update():
    order = med_order(FLUOXETINE)
    order.update(status="stopped", meta={"lastUpdated": "2026-11-30T08:00:00Z"})
    order["dispenseRequest"] = {"validityPeriod": {"end": "2027-03-01"}}  # stopped early
    use = use_of(order, ON_FILE)
    assert use.state == "ended" and use.ended_text == "on or before 2026-11-30"


def test_a_stop_date_that_is_not_recorded_is_said():
    order = med_order(FLUOXETINE)
    order["status"] = "completed"
    use = use_of(order, ON_FILE)
    assert use.state == "ended" and use.ended is None and "not recorded" in use.why


def test_an_active_order_whose_period_has_ended_ended_then():
    order = med_order(FLUOXETINE)
    order["status"] = "active"
    order["dosageInstruction"] = [
        {"timing": {"repeat": {"boundsPeriod": {"end": "2026-10-01"}}}},
        {"timing": {"repeat": {"boundsPeriod": {"end": "2026-11-15"}}}},
    ]
    order["dispenseRequest"] = {"validityPeriod": {"end": "2026-11-01"}}
    use = use_of(order, ON_FILE)
    assert use.state == "ended" and use.ended_text == "2026-11-15"  # the latest end


def test_an_order_on_hold_is_taken_now():
    order = med_order(FLUOXETINE)
    order["status"] = "on-hold"
    use = use_of(order, ON_FILE)
    assert use.state == "current" and "resume" in use.why


def test_the_start_is_the_latest_stated_and_counts_to_the_end_of_its_day():
    order = med_order(CARBAMAZEPINE)
    order.update(status="active", authoredOn="2026-05-01")
    order["dosageInstruction"] = [{"timing": {"repeat": {"boundsPeriod": {"start": "2026-06"}}}}]
    use = use_of(order, ON_FILE)
    assert use.started_text == "2026-06"
    assert use.started == datetime(2026, 7, 1, tzinfo=UTC)  # June, to its end


def test_another_patients_records_are_not_read():
    mine = med_statement(FLUOXETINE)
    theirs = med_statement(FLUOXETINE, statement_id="other", patient="pat-2")
    found = history(None, [mine, theirs], [], "pat-1", None, NOW)
    assert [u.ref for u in found.uses] == ["MedicationStatement/stmt-1"]
    assert found.read


def test_nothing_read_is_said_apart_from_nothing_on_file():
    assert not history(None, None, [], "pat-1", None, NOW).read
    assert history([], None, [], "pat-1", None, NOW).read


def test_a_medication_sent_beside_the_statements_names_the_drug():
    statement = med_statement(None)
    statement["medicationReference"] = {"reference": "Medication/flx"}
    medication = {
        "resourceType": "Medication",
        "id": "flx",
        "code": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "4493"}]
        },
    }
    [use] = history(None, [statement, medication], [], "pat-1", None, NOW).uses
    assert use.record.coded_medication == medication["code"]


# -- continuing therapy -------------------------------------------------------------------


def on_file(*resources: dict, statements: list[dict] | None = None) -> MedicationHistory:
    return history(list(resources), statements, [], "pat-1", None, NOW)


def cbz(status: str = "active", **extra) -> dict:
    order = med_order(CARBAMAZEPINE, order_id=f"cbz-{status}")
    order.update(status=status, **extra)
    return order


def test_therapy_days_come_from_the_earliest_active_record(knowledge):
    older = cbz(authoredOn="2026-01-10")
    newer = cbz(authoredOn="2026-11-27")
    newer["id"] = "cbz-renewal"
    trace = Trace()
    found = therapies({"carbamazepine"}, on_file(newer, older), knowledge, trace, NOW)
    assert found["carbamazepine"].days == 330
    assert found["carbamazepine"].ref == "MedicationRequest/cbz-active"
    assert "active on file for 330 days" in trace.render()
    assert "2026-01-10" not in trace.render()  # dates stay out of the (logged) trace


def test_a_statement_gives_its_effective_start(knowledge):
    statement = med_statement(CARBAMAZEPINE, effectivePeriod={"start": "2025-02-01"})
    found = therapies({"carbamazepine"}, on_file(statements=[statement]), knowledge, Trace(), NOW)
    assert found["carbamazepine"].days > 600


@pytest.mark.parametrize("status", ["on-hold", "intended", "stopped", "unknown"])
def test_only_steady_use_up_to_now_is_continuing_therapy(knowledge, status):
    record = med_statement(CARBAMAZEPINE, status=status, effectivePeriod={"start": "2025-02-01"})
    found = therapies({"carbamazepine"}, on_file(statements=[record]), knowledge, Trace(), NOW)
    assert found == {}


def test_a_record_without_a_start_is_known_without_days(knowledge):
    trace = Trace()
    found = therapies(
        {"carbamazepine"}, on_file(statements=[med_statement(CARBAMAZEPINE)]), knowledge, trace
    )
    assert found["carbamazepine"].days is None
    assert "no start stated" in trace.render()


def test_the_order_being_signed_is_not_history(knowledge):
    draft = DraftOrder(cbz("draft", authoredOn="2025-01-01"))
    found = history(None, None, [draft], "pat-1", None, NOW)
    assert [u.source for u in found.uses] == [SESSION]
    trace = Trace()
    assert therapies({"carbamazepine"}, found, knowledge, trace, NOW) == {}
    assert "could not be read" in trace.render()  # no record on file was read at all
