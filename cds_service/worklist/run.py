"""One worklist run: find the orders, read their patients' data in batches, judge each order
with the prescribing code, keep the warning and critical cards (``--since``: those whose
order or result is new), and optionally write Tasks.

Progress goes to ``progress`` (stderr): counts and phases, never a patient or order id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.errors import ClientError
from ..fhir.patient_data import PATIENT
from ..fhir.queries import prefetch_templates
from ..fhir.values import parse_date
from ..pipeline import Engine
from .judge import Judge, Row, hook_for, results_of
from .orders import find_orders
from .prefetch import owner, read_prefetch
from .reader import PATIENTS_PER_SEARCH, OutOfTime, Reader
from .tasks import TaskReport, write_tasks

_RANK = {"critical": 0, "warning": 1}
log = logging.getLogger("cds_service.worklist")


@dataclass
class Outcome:
    """What a run found, and why it may be incomplete."""

    rows: list[Row] = field(default_factory=list)
    hook: str | None = None
    orders: int = 0  # orders found
    patients: int = 0
    judged: int = 0  # orders judged
    pages: int = 0
    #: why the list may be incomplete (searches that failed, the budget): no patient data
    problems: list[str] = field(default_factory=list)
    #: orders that could not be judged: (patient reference, order reference, why)
    unjudged: list[tuple[str, str, str]] = field(default_factory=list)
    tasks: TaskReport | None = None

    @property
    def complete(self) -> bool:
        return not self.problems and not self.unjudged and not (self.tasks and self.tasks.failed)


def run(
    engine: Engine,
    fhir_server: str,
    token: str | None,
    *,
    since: str | None = None,
    budget: float,
    max_pages: int,
    tasks: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """The worklist of ``fhir_server`` (a base URL already checked against the SSRF rules)."""
    outcome = Outcome(hook=hook_for(engine.site))
    if outcome.hook is None:
        progress("every prescribing hook is silent or off by site configuration: nothing listed")
        return outcome
    reader = Reader(
        fhir_server,
        token,
        engine.settings,
        engine.session,
        budget=budget,
        max_pages=max_pages,
        progress=progress,
    )
    try:
        _judge_all(engine, reader, fhir_server, token, since, outcome, progress)
    except OutOfTime as exc:
        outcome.problems.append(str(exc))
    outcome.rows.sort(key=lambda r: (_RANK.get(r.indicator, 2), r.patient, r.order, r.summary))
    if tasks and outcome.rows:
        try:
            outcome.tasks = write_tasks(reader, outcome.rows)
        except OutOfTime as exc:
            outcome.tasks = TaskReport(failed=[f"Tasks not written: {exc}"])
    outcome.pages = reader.pages
    return outcome


def _judge_all(
    engine: Engine,
    reader: Reader,
    fhir_server: str,
    token: str | None,
    since: str | None,
    outcome: Outcome,
    progress: Callable[[str], None],
) -> None:
    assert outcome.hook is not None
    capabilities = reader.capabilities()
    found = find_orders(reader, capabilities, engine.knowledge, engine.site, since)
    outcome.problems += found.problems
    by_patient: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for reference, resource in sorted(found.orders.items()):
        patient = owner(resource)
        if patient:
            by_patient.setdefault(patient, []).append((reference, resource))
    outcome.orders = sum(len(v) for v in by_patient.values())
    outcome.patients = len(by_patient)
    if len(found.orders) > outcome.orders:
        progress(f"{len(found.orders) - outcome.orders} orders name no patient: not judged")
    progress(f"{outcome.orders} orders of {outcome.patients} patients to judge ({outcome.hook})")
    judge = Judge(engine, outcome.hook, fhir_server, token)
    templates = prefetch_templates(engine.knowledge)
    known = {PATIENT: {p: [r] for p, r in found.patients.items()}}
    since_date = parse_date(since) if since else None
    patients = sorted(by_patient)
    for start in range(0, len(patients), PATIENTS_PER_SEARCH):
        group = patients[start : start + PATIENTS_PER_SEARCH]
        prefetch, _ = read_prefetch(reader, templates, group, known)
        for patient in group:
            if reader.left() <= 0:
                raise OutOfTime("the run's time budget (--budget) is spent")
            try:
                results = results_of(engine, patient, prefetch[patient], fhir_server)
            except Exception:  # (the judging below meets the same problem and says so)
                results = None
            for reference, resource in by_patient[patient]:
                try:
                    rows = judge.order(
                        patient, reference, resource, found.medications, prefetch[patient], results
                    )
                except ClientError as exc:
                    outcome.unjudged.append((f"Patient/{patient}", reference, exc.message))
                    continue
                except Exception as exc:  # a bug: this order unjudged, the others go on
                    log.error("unexpected error judging an order: %s", type(exc).__name__)
                    why = f"an unexpected error in the service ({type(exc).__name__})"
                    outcome.unjudged.append((f"Patient/{patient}", reference, why))
                    continue
                outcome.judged += 1
                outcome.rows += [r for r in rows if _new(r, since_date)]
        progress(
            f"judged {min(start + len(group), len(patients))}/{len(patients)} patients "
            f"({outcome.judged} orders): {len(outcome.rows)} to review"
        )


def _new(row: Row, since: datetime | None) -> bool:
    """Is the row's order written, or its result issued, since ``since``? A row whose dates
    are unknown is kept: an unclear date never hides an alert."""
    if since is None:
        return True
    changed = parse_date(row.changed_since) if row.changed_since else None
    return changed is None or changed >= since
