"""Advice that holds only above a dose per interval (a row's ``dose_limit``).

DPWG contraindicates codeine in CYP2D6 ultrarapid metabolizers above 20 mg every 6 hours in
adults and above 10 mg every 6 hours in children aged 12 or older (Matic et al. 2022). The
order's most per 6 hours is the larger of its largest single dose and its most a day spread
over the day (a quarter of it for 6 hours). At or below the limit for every age the patient's
birth date allows, the row the limit names (``within``) replaces the row: a caution that names
the risk factors DPWG still contraindicates codeine for, which the service cannot see.

The more cautious reading stays wherever the inputs leave it open: an order whose dose or
frequency is not read, a patient whose age is unknown, or an age DPWG gives no limit for
(under 12) keeps the advice above the limit, and the trace says why.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from ..core.trace import Trace
from ..core.wording import number
from ..knowledge.loader import Knowledge
from .medications import IdentifiedDrug
from .order_details import age_range, drug_dose
from .recommendations import Match


def needs_age(drugs: list[IdentifiedDrug], knowledge: Knowledge) -> bool:
    """Does a chosen row of an ordered drug hold only above a dose limit (the patient's age
    is then read)?"""
    return any(
        r.dose_limit is not None for d in drugs for r in knowledge.recommendations_for(d.drug)
    )


def apply(
    m: Match,
    patient: dict[str, Any] | None,
    knowledge: Knowledge,
    trace: Trace,
    today: date | None = None,
) -> Match:
    """``m`` with the row for a dose within the limit, where the order is within it."""
    limit = m.recommendation.dose_limit
    if limit is None or m.possible:
        return m
    drug = m.drug.drug
    every = f"every {number(limit.per_hours)} hours"
    mg = limit.limit_for(age_range(patient, today))
    if mg is None:
        trace.add(
            "dose",
            f"{drug}: {m.recommendation.id} holds above a dose limit that depends on the age; "
            "the age is unknown or has no limit: the advice above the limit stands",
        )
        return m
    dose = drug_dose(m.drug, knowledge)
    single = dose.mg_range[1] if dose.mg_range else dose.mg_per_dose
    span = dose.mg_per_day_range
    daily = dose.max_mg_per_day if dose.max_mg_per_day is not None else span and span[1]
    if single is None or daily is None:
        why = f" ({dose.problem})" if dose.problem else ""
        trace.add(
            "dose",
            f"{drug}: the order's dose per {number(limit.per_hours)} hours is not read{why}: "
            f"the advice above {number(mg)} mg {every} stands",
        )
        return m
    most = max(single, daily * limit.per_hours / 24)
    ordered = f"ordered {drug} {dose.describe()}, at most {number(most)} mg {every}"
    if most > mg:
        trace.add("dose", f"{drug}: {ordered}: above the limit of {number(mg)} mg {every}")
        return replace(
            m,
            dose_text=f"{ordered}: above the guideline's limit of {number(mg)} mg {every} for "
            "this patient's age.",
        )
    within = knowledge.rows_by_id[limit.within]
    trace.add(
        "dose",
        f"{drug}: {ordered}: within the limit of {number(mg)} mg {every}: {within.id} applies",
    )
    return replace(
        m,
        recommendation=within,
        dose_text=f"{ordered}: within the guideline's limit of {number(mg)} mg {every} for this "
        "patient's age.",
    )
