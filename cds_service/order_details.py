"""What a draft order says beyond its drug: the dose, how often, and why.

Reads R4 (``dosageInstruction.doseAndRate.doseQuantity``), STU3/DSTU2 (``doseQuantity``)
and free text ("10 mg at night", "1 tablet twice daily"). A dose in tablets or capsules is
turned into milligrams with the product's strength ("amitriptyline 10 MG Oral Tablet").
Anything unclear is None: the card then says what the guideline says without the order's
own numbers.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from .fhir_values import as_dict, as_str, objects, texts
from .medications import MAX_TEXT_READ
from .wording import number

_UNITS_MG = {"mg", "milligram", "milligrams"}
_UNITS_UNIT = {
    "tablet",
    "tablets",
    "tab",
    "capsule",
    "capsules",
    "cap",
    "pill",
    "pills",
    "1",
    "{tbl}",
}
_PER_DAY_WORDS = [
    (r"\b(four times (a|per) day|qid|q\.i\.d\.)\b", 4.0),
    (r"\b(three times (a|per) day|tid|t\.i\.d\.)\b", 3.0),
    (r"\b(twice (a |per )?day|twice daily|bid|b\.i\.d\.)\b", 2.0),
    (
        r"\b(once (a |per )?day|once daily|daily|qd|q\.d\.|at night|at bedtime|bedtime|nightly|"
        r"qhs|hs|every (morning|evening|night))\b",
        1.0,
    ),
    (r"\bevery 4 hours\b|\bq4h\b", 6.0),
    (r"\bevery 6 hours\b|\bq6h\b", 4.0),
    (r"\bevery 8 hours\b|\bq8h\b", 3.0),
    (r"\bevery 12 hours\b|\bq12h\b", 2.0),
]


@dataclass(frozen=True)
class OrderDose:
    mg_per_dose: float | None
    doses_per_day: float | None

    @property
    def mg_per_day(self) -> float | None:
        if self.mg_per_dose is None or self.doses_per_day is None:
            return None
        return self.mg_per_dose * self.doses_per_day

    def describe(self) -> str:
        parts = []
        if self.mg_per_dose is not None:
            parts.append(f"{number(self.mg_per_dose)} mg per dose")
        if self.mg_per_day is not None:
            parts.append(f"{number(self.mg_per_day)} mg/day")
        return ", ".join(parts) or "dose not stated"


def strength_mg(medication_text: str, drug: str) -> float | None:
    """The strength of ``drug`` in a product name ('Acetaminophen 300 MG / Codeine 30 MG')."""
    text = medication_text[:MAX_TEXT_READ].lower()
    for part in text.split("/"):
        if drug in part:
            m = re.search(r"(\d+(?:\.\d+)?)\s*mg\b(?!\s*/\s*(ml|hr))", part)
            if m:
                return float(m.group(1))
    return None


def order_dose(resource: dict[str, Any], medication_text: str, drug: str) -> OrderDose:
    """The ordered dose of ``drug`` in mg, and how many doses a day, as far as stated."""
    dosage = next(iter(objects(resource.get("dosageInstruction"))), {})
    quantity = as_dict(dosage.get("doseQuantity"))
    for rate in objects(dosage.get("doseAndRate")):
        quantity = as_dict(rate.get("doseQuantity")) or quantity
    value = quantity.get("value")
    unit = (as_str(quantity.get("unit")) or as_str(quantity.get("code"))).strip().lower()
    free = " ".join(
        [as_str(dosage.get("text")), *texts(as_dict(dosage.get("timing")).get("code"))]
    )[:MAX_TEXT_READ].lower()

    mg: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6:
        if unit in _UNITS_MG:
            mg = float(value)
        elif unit in _UNITS_UNIT or not unit:
            strength = strength_mg(medication_text, drug)
            mg = float(value) * strength if strength is not None else None
    if mg is None:
        m = re.search(r"(\d+(?:\.\d+)?)\s*mg\b", free)
        mg = float(m.group(1)) if m else None
    if mg is None:  # "1 tablet at bedtime": units of the product's strength
        m = re.search(r"(\d+(?:\.\d+)?)\s*(?:tablet|tab|capsule|cap|pill)s?\b", free)
        strength = strength_mg(medication_text, drug) if m else None
        mg = float(m.group(1)) * strength if m and strength is not None else None
    return OrderDose(mg, _doses_per_day(as_dict(dosage.get("timing")), free))


def _doses_per_day(timing: dict[str, Any], free: str) -> float | None:
    repeat = as_dict(timing.get("repeat"))
    frequency = repeat.get("frequency", 1)
    period = repeat.get("period")
    unit = as_str(repeat.get("periodUnit"))
    numbers = all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0
        for v in (frequency, period)
    )
    if numbers and unit in ("h", "d", "wk"):
        per = {"h": 24 / period, "d": 1 / period, "wk": 1 / (7 * period)}[unit]
        return float(frequency) * per
    for pattern, per_day in _PER_DAY_WORDS:
        if re.search(pattern, free):
            return per_day
    return None


def reason_texts(resource: dict[str, Any]) -> list[str]:
    """Why the drug is ordered, as text: coded reasons' text and displays, references'
    displays (R4 ``reasonCode``/``reasonReference``, DSTU2 ``reasonCodeableConcept``)."""
    out: list[str] = []
    for field in ("reasonCode", "reasonCodeableConcept", "reason"):
        for concept in objects(resource.get(field)):
            out.extend(texts(concept.get("concept", concept)))
    for ref in objects(resource.get("reasonReference")):
        out.append(as_str(ref.get("display")))
    return [t[:MAX_TEXT_READ] for t in out if t]


def age_range(patient: dict[str, Any] | None, today: date | None = None) -> tuple[int, int] | None:
    """The youngest and oldest whole-year age the patient's ``birthDate`` allows, or None.

    A full date gives one age. FHIR allows a year or a year and month alone: then every day of
    that period could be the birthday ('2020' is 5 or 6 years old on 2026-06-01)."""
    birth = as_str((patient or {}).get("birthDate"))
    m = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", birth.strip())
    if not m:
        return None
    today = today or date.today()
    year = int(m.group(1))
    try:
        if m.group(3):
            earliest = latest = date(year, int(m.group(2)), int(m.group(3)))
        elif m.group(2):
            month = int(m.group(2))
            earliest = date(year, month, 1)
            latest = date(year, month, calendar.monthrange(year, month)[1])
        else:
            earliest, latest = date(year, 1, 1), date(year, 12, 31)
    except ValueError:
        return None
    if earliest > today:
        return None  # born in the future: not a date to reason with
    return _whole_years(min(latest, today), today), _whole_years(earliest, today)


def _whole_years(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
