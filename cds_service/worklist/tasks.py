"""``--task``: a FHIR Task for the pharmacist per listed order and advice, written only when
asked, and never twice.

Each Task carries an identifier made of the order and the card's topic
(``urn:pgx-pain-cds:worklist-task`` | ``MedicationRequest/rx-1:codeine-cyp2d6-pm``). Before
writing, the worklist searches the Tasks with those identifiers (in batches) and writes only
the missing ones, each as a conditional create (``If-None-Exist``) where the server honours it.
A Task the pharmacist has completed or cancelled is found too: the same advice on the same
order is not raised again; a new advice (a new result, another row) makes a new Task.

Writes go where reads go (the FHIR server, through the guarded session, no redirects) and are
bounded the same way: ``PGX_CDS_FHIR_TIMEOUT`` per socket operation, ``PGX_CDS_FHIR_BUDGET``
for the whole write, within the run's budget.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ..core.deadlines import WATCHDOG
from ..fhir.addresses import Watch, current
from ..fhir.limits import READ_ERRORS
from ..fhir.session import proxies_for
from ..fhir.values import as_str, objects
from .judge import Row
from .reader import PAGE_SIZE, OutOfTime, Reader, SearchFailed, joined

SYSTEM = "urn:pgx-pain-cds:worklist-task"
#: SNOMED CT 46255001 |Pharmacist (occupation)|: who the Task is for.
PHARMACIST = {"system": "http://snomed.info/sct", "code": "46255001", "display": "Pharmacist"}
TASK_CODE = "Review an active order against the patient's pharmacogenomic results"
#: What a note on the Task holds at most (the card's whole text is in the worklist page).
NOTE_LIMIT = 2000

log = logging.getLogger("cds_service.worklist")


def identifier(row: Row) -> str:
    """The Task's identifier value: the order and the advice (rerun: the same value)."""
    return f"{row.order}:{row.recommendation}"


def _token(value: str) -> str:
    """``SYSTEM|value`` for a search or ``If-None-Exist``, URL-encoded; FHIR's search
    escapes (``\\`` before ``,`` ``|`` ``$`` ``\\``) first."""
    escaped = "".join("\\" + c if c in ",|$\\" else c for c in value)
    return quote(f"{SYSTEM}|{escaped}", safe=":/")


def task(row: Row, now: datetime) -> dict[str, Any]:
    """The Task for ``row``: requested of a pharmacist, about the order, for the patient."""
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [{"system": SYSTEM, "value": identifier(row)}],
        "status": "requested",
        "intent": "proposal",
        "priority": "urgent" if row.indicator == "critical" else "routine",
        "code": {"text": TASK_CODE},
        "description": row.summary,
        "focus": {"reference": row.order},
        "for": {"reference": row.patient},
        "authoredOn": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "performerType": [{"coding": [PHARMACIST], "text": "Pharmacist"}],
        "reasonCode": {"text": row.summary},
    }
    if row.advice:
        resource["note"] = [{"text": row.advice[:NOTE_LIMIT]}]
    return resource


@dataclass
class TaskReport:
    written: int = 0
    existing: int = 0
    failed: list[str] = field(default_factory=list)  # why (no patient data)


def write_tasks(reader: Reader, rows: list[Row], now: datetime | None = None) -> TaskReport:
    """A Task for each row that has none yet (one per order and advice)."""
    report = TaskReport()
    wanted: dict[str, Row] = {}
    for row in rows:
        wanted.setdefault(identifier(row), row)
    if not wanted:
        return report
    try:
        existing = _existing(reader, sorted(wanted))
    except SearchFailed as exc:
        report.failed.append(f"Tasks not written: the existing ones could not be read ({exc})")
        return report
    now = now or datetime.now(UTC)
    for value, row in wanted.items():
        if value in existing:
            report.existing += 1
            continue
        status = _post(reader, task(row, now), value)
        if status == 201:
            report.written += 1
        elif status == 200:  # a conditional create that found one (written meanwhile)
            report.existing += 1
        else:
            report.failed.append(f"a Task could not be written ({status or 'no answer'})")
    reader.progress(
        f"Tasks: {report.written} written, {report.existing} already there, "
        f"{len(report.failed)} failed"
    )
    return report


def _existing(reader: Reader, values: list[str]) -> set[str]:
    """Which of the identifier ``values`` already have a Task."""
    found: set[str] = set()
    queries = joined("Task?", "identifier", [_token(v) for v in values], f"&_count={PAGE_SIZE}")
    for query in queries:
        for resource in reader.search(query, "existing Tasks"):
            for ident in objects(resource.get("identifier")):
                if as_str(ident.get("system")) == SYSTEM:
                    found.add(as_str(ident.get("value")))
    return found


def _post(reader: Reader, resource: dict[str, Any], value: str) -> int | None:
    """POST one Task (conditional create), bounded; the HTTP status, None without one."""
    try:
        deadline = reader.read_deadline()
    except OutOfTime:
        return None
    headers = {
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        "If-None-Exist": f"identifier={_token(value)}",
    }
    if reader.token:
        headers["Authorization"] = f"Bearer {reader.token}"
    timeout = min(reader.settings.fhir_timeout, max(deadline - time.monotonic(), 0.001))
    watch = Watch(deadline=deadline)
    current.watch = watch
    WATCHDOG.arm(deadline, watch)
    try:
        with reader.session.post(
            reader.base + "Task",
            data=json.dumps(resource).encode("utf-8"),
            headers=headers,
            timeout=(timeout, timeout),
            allow_redirects=False,
            proxies=proxies_for(reader.base),  # (as the reads: the session ignores the env)
            stream=True,  # the answer's body is not needed: only its status is read
        ) as response:
            return response.status_code
    except READ_ERRORS as exc:
        log.warning("writing a Task failed: %s", type(exc).__name__)
        return None
    finally:
        WATCHDOG.disarm(watch)
        current.watch = None
