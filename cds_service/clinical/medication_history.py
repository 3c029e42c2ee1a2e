"""What the chart says the patient takes, took until when, and since when.

Three sources, each record read with ``DraftOrder``'s reading of the medication (inline
``medicationCodeableConcept``, R5 ``medication.concept``, a contained Medication, one sent
beside the records (``_include``), else the reference's display):

* the orders on file (``activeMedications``: MedicationRequest, DSTU2 MedicationOrder;
  searched with status active and on-hold),
* the medication list (``medicationStatements``: MedicationStatement, R4/STU3/DSTU2/R5;
  home medications, drugs from outside prescribers, patient-reported),
* the other draft orders of this ordering session.

Each record is **current** (being taken, or about to be), **ended** (with the latest date it
may have been taken: a long-lived inhibitor still acts for a while after it), or **not
counted**, and the trace says which and why:

====================================  =========================================================
status                                read as
====================================  =========================================================
active, draft (this session)          current, unless its period has ended (then: ended)
on-hold (order or statement)          current: it is expected to resume
intended (statement)                  current: the patient is about to take it
unknown, or no status                 current (it may be taken: the cautious reading); the
                                      card says the status is unknown
stopped, completed (R5: ended)        ended, on the stop date (below)
entered-in-error                      not counted: the record is wrong
not-taken (statement; STU3 taken n,   not counted: the patient did not take it
DSTU2 wasNotTaken)
cancelled (order)                     not counted: never started
====================================  =========================================================

R5 statements (status ``recorded``) are read from ``adherence`` (taking, on-hold, stopped,
not-taking) where it is given.

**Stop dates.** The end of the period the record states: a statement's
``effectivePeriod.end``; an order's ``dispenseRequest.validityPeriod.end``, the latest
``boundsPeriod.end`` of its dosage lines, DSTU2 ``dateEnded`` (the latest of them: a supply
may last to the end). A date without a time counts to the end of that day (month, year: to
its end). A record that says it is over but states no past end was stopped **on or before**
a statement's ``dateAsserted``, else the record's ``meta.lastUpdated`` (the status was set by
then); with none of these the stop date is not recorded.

**Start dates** (for continuing therapy): an order's ``authoredOn`` (DSTU2 ``dateWritten``),
``dispenseRequest.validityPeriod.start`` and its dosage lines' ``boundsPeriod.start``; a
statement's ``effectivePeriod.start``. The latest of them counts (taking cannot begin before
any of them), each to the end of its day: the cautious reading, as a shorter history keeps
the stricter advice. A statement's ``effectiveDateTime`` is a moment of use, not a start,
and is not read as one.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ..core.errors import ClientError
from ..core.trace import Trace
from ..fhir.hook_context import DraftOrder
from ..fhir.values import as_dict, as_str, is_about, objects, parse_date
from ..knowledge.loader import Knowledge
from .medications import identify

ORDER_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})
STATEMENT = "MedicationStatement"
RECORD_TYPES = ORDER_TYPES | {STATEMENT}

ON_FILE = "medication order on file"
LISTED = "medication list (MedicationStatement)"
SESSION = "ordered in this session"

State = Literal["current", "ended", "not counted"]

#: status -> (state, why) for the statuses that decide on their own
_CURRENT = {
    "active": "active",
    "draft": "draft order",
    "recorded": "recorded",  # R5 statement, without adherence
    "on-hold": "on hold (expected to resume)",
    "intended": "intended (about to be taken)",
    "unknown": "status unknown (counted: it may be being taken)",
    "": "no status (counted: it may be being taken)",
}
_OVER = frozenset({"stopped", "completed", "ended"})
_NOT_COUNTED = {
    "entered-in-error": "entered in error (the record is wrong)",
    "not-taken": "not taken by the patient",
    "cancelled": "cancelled (never started)",
}
#: R5 MedicationStatement.adherence codes -> the R4 status they amount to
_ADHERENCE = {
    "taking": "active",
    "on-hold": "on-hold",
    "stopped": "stopped",
    "not-taking": "not-taken",
    "unknown": "unknown",
}


@dataclass(frozen=True)
class MedicationUse:
    """One medication record of the patient, read (see the module's notes)."""

    record: DraftOrder
    source: str  # ON_FILE, LISTED or SESSION
    status: str  # in R4 terms (a statement's STU3/DSTU2/R5 ways of saying it, read)
    state: State
    why: str  # the status as read, for the trace and the card
    #: state "ended": the latest the drug may have been taken (None: not recorded)
    ended: datetime | None = None
    ended_text: str | None = None  # as the card says it: "2026-11-20", "on or before …"
    #: state "current": the latest start the record states (None: none stated)
    started: datetime | None = None
    started_text: str | None = None

    @property
    def ref(self) -> str:
        return self.record.reference or f"{self.record.resource_type or 'record'} without id"


@dataclass(frozen=True)
class MedicationHistory:
    uses: tuple[MedicationUse, ...] = ()
    #: could the orders on file or the medication list be read at all?
    read: bool = False


def history(
    orders: list[dict[str, Any]] | None,
    statements: list[dict[str, Any]] | None,
    session: list[DraftOrder],
    patient_id: str,
    fhir_base: str | None,
    now: datetime | None = None,
) -> MedicationHistory:
    """The patient's medication records: orders on file and the medication list (None where
    they could not be read), and the other draft orders of this session."""
    now = now or datetime.now(UTC)
    uses: list[MedicationUse] = []
    for found, source in ((orders, ON_FILE), (statements, LISTED)):
        sent = {
            f"Medication/{r['id']}": r
            for r in found or []
            if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)
        }
        uses += [
            read_use(DraftOrder(r, sent), source, now)
            for r in found or []
            if r.get("resourceType") in RECORD_TYPES and is_about(r, patient_id, fhir_base)
        ]
    uses += [read_use(o, SESSION, now) for o in session if o.resource_type in RECORD_TYPES]
    return MedicationHistory(tuple(uses), orders is not None or statements is not None)


def read_use(record: DraftOrder, source: str, now: datetime | None = None) -> MedicationUse:
    """One record: current, ended (when) or not counted (why)."""
    now = now or datetime.now(UTC)
    res = record.resource
    status = as_str(res.get("status")).strip().lower()
    statement = record.resource_type == STATEMENT
    if statement:
        status = _statement_status(res, status)
    if status in _NOT_COUNTED:
        return MedicationUse(record, source, status, "not counted", _NOT_COUNTED[status])
    if status not in _CURRENT and status not in _OVER:
        return MedicationUse(record, source, status, "not counted", f"status '{status}' not read")
    end_value = _stated_end(res, statement)
    end = _latest_instant(end_value) if end_value else None
    if status in _CURRENT and (end is None or end > now):
        start, start_text = _start(res, statement)
        return MedicationUse(
            record,
            source,
            status,
            "current",
            _CURRENT[status],
            started=start,
            started_text=start_text,
        )
    why = status if status in _OVER else f"{_CURRENT[status]}, its period has ended"
    if end is not None and end <= now:
        return MedicationUse(record, source, status, "ended", why, end, as_str(end_value)[:10])
    bound = as_str(res.get("dateAsserted")) if statement else ""
    bound = bound or as_str(as_dict(res.get("meta")).get("lastUpdated"))
    bound_at = _latest_instant(bound) if bound else None
    if bound_at is not None:
        return MedicationUse(
            record, source, status, "ended", why, min(bound_at, now), f"on or before {bound[:10]}"
        )
    return MedicationUse(record, source, status, "ended", f"{why}, stop date not recorded")


def _statement_status(res: dict[str, Any], status: str) -> str:
    """A statement's status in R4 terms: STU3 ``taken: n`` and DSTU2 ``wasNotTaken`` say it
    was not taken; R5 ``adherence`` says how it is taken."""
    if as_str(res.get("taken")).lower() == "n" or res.get("wasNotTaken") is True:
        return "not-taken"
    for coding in objects(as_dict(as_dict(res.get("adherence")).get("code")).get("coding")):
        code = as_str(coding.get("code")).lower()
        for prefix, meaning in _ADHERENCE.items():
            if code.startswith(prefix):  # "stopped-as-directed", "on-hold-not-as-directed"
                return meaning
    return status


def _stated_end(res: dict[str, Any], statement: bool) -> str | None:
    """The end of the period the record states (the latest, for an order's several)."""
    if statement:
        end = as_str(as_dict(res.get("effectivePeriod")).get("end"))
        return end or None
    ends = [
        as_str(as_dict(as_dict(res.get("dispenseRequest")).get("validityPeriod")).get("end")),
        as_str(res.get("dateEnded")),  # DSTU2
    ]
    for dosage in objects(res.get("dosageInstruction")):
        repeat = as_dict(as_dict(dosage.get("timing")).get("repeat"))
        ends.append(as_str(as_dict(repeat.get("boundsPeriod")).get("end")))
    readable = [(at, e) for e in ends if e and (at := _latest_instant(e)) is not None]
    return max(readable)[1] if readable else None


def _start(res: dict[str, Any], statement: bool) -> tuple[datetime | None, str | None]:
    """The latest start the record states, and that date as written."""
    if statement:
        starts = [as_str(as_dict(res.get("effectivePeriod")).get("start"))]
    else:
        validity = as_dict(as_dict(res.get("dispenseRequest")).get("validityPeriod"))
        starts = [
            as_str(res.get("authoredOn")),
            as_str(res.get("dateWritten")),  # DSTU2
            as_str(validity.get("start")),
        ]
        for dosage in objects(res.get("dosageInstruction")):
            repeat = as_dict(as_dict(dosage.get("timing")).get("repeat"))
            starts.append(as_str(as_dict(repeat.get("boundsPeriod")).get("start")))
    readable = [(at, s[:10]) for s in starts if s and (at := _latest_instant(s)) is not None]
    return max(readable) if readable else (None, None)


def _latest_instant(value: str) -> datetime | None:
    """The last moment a FHIR date or dateTime may mean: a date without a time, to the end
    of its day (a month, to the end of the month; a year, to the end of the year)."""
    parsed = parse_date(value)
    if parsed is None:
        return None
    text = value.strip()
    if len(text) == 4:
        return parsed.replace(year=parsed.year + 1)
    if len(text) == 7:
        return parsed + timedelta(days=calendar.monthrange(parsed.year, parsed.month)[1])
    if len(text) == 10:
        return parsed + timedelta(days=1)
    return parsed


def days_since(moment: datetime, now: datetime) -> int:
    """Calendar days from the day of ``moment`` (a day's end counts as that day) to now."""
    return (now.date() - (moment - timedelta(microseconds=1)).date()).days


# -- continuing therapy -------------------------------------------------------------------


@dataclass(frozen=True)
class Therapy:
    """Since when the chart shows a drug taken (its active records on file)."""

    drug: str
    ref: str
    days: int | None  # None: no start stated
    since_text: str | None

    def describe(self) -> str:
        if self.days is None:
            return f"{self.drug} on the medication record ({self.ref}), with no start date"
        return f"{self.drug} on the medication record since {self.since_text} ({self.ref})"


def therapies(
    drugs: set[str],
    found: MedicationHistory,
    knowledge: Knowledge,
    trace: Trace,
    now: datetime | None = None,
) -> dict[str, Therapy]:
    """For each of ``drugs``, since when the patient has taken it, from the active records
    on file (orders with status active, statements active; not one on hold, intended or
    ordered in this session: continuing therapy means steady use up to now). The record that
    started earliest counts; a drug with records but no start date maps to days None."""
    now = now or datetime.now(UTC)
    out: dict[str, Therapy] = {}
    if not drugs:
        return out
    if not found.read:
        for drug in sorted(drugs):
            trace.add(
                "history",
                f"{drug}: the medication history could not be read: taken as a new start",
            )
        return out
    for use in found.uses:
        if use.source == SESSION or use.state != "current" or use.status != "active":
            continue
        try:
            named, _how = identify(use.record, knowledge)
        except ClientError:  # a malformed coding on a record: it names nothing we read
            continue
        for drug in {d.drug for d in named} & drugs:
            days = (now - use.started).days if use.started is not None else None
            known = out.get(drug)
            if known is None or (days is not None and (known.days is None or days > known.days)):
                out[drug] = Therapy(drug, use.ref, days, use.started_text)
    for drug in sorted(drugs):
        therapy = out.get(drug)
        if therapy is None:
            trace.add("history", f"{drug}: no active order or statement on file: a new start")
        elif therapy.days is None:
            trace.add("history", f"{drug}: active on file ({therapy.ref}) but no start stated")
        else:
            trace.add("history", f"{drug}: active on file for {therapy.days} days ({therapy.ref})")
    return out
