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

from ..core.wording import number
from ..fhir.values import as_dict, as_str, objects, texts
from .medications import MAX_TEXT_READ

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
    "tbl",
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
    #: The most the order allows in a day: a dose range's upper end, ``frequencyMax``, every
    #: dosage line taken together. None unless every line says it.
    max_mg_per_day: float | None = None

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
        top = self.max_mg_per_day
        if top is not None and (self.mg_per_day is None or top > self.mg_per_day + 1e-9):
            parts.append(f"up to {number(top)} mg/day")
        return ", ".join(parts) or "dose not stated"


def strength_mg(medication_text: str, drug: str) -> float | None:
    """The strength of ``drug`` in a product name ('Acetaminophen 300 MG / Codeine 30 MG')."""
    text = medication_text[:MAX_TEXT_READ].lower()
    for part in text.split("/"):
        if drug in part:
            m = re.search(r"(?<!\d)(\d+(?:\.\d+)?)\s*mg\b(?!\s*/\s*(ml|hr))", part)
            if m:
                return float(m.group(1))
    return None


def order_dose(resource: dict[str, Any], medication_text: str, drug: str) -> OrderDose:
    """The ordered dose of ``drug`` in mg, how many doses a day, and the most a day, as far
    as stated. Several dosage lines are taken together (the same ``sequence`` at the same
    time, different ones one after the other, lines without one alongside every step): the
    most a day is then known, but not one dose and frequency to compute with."""
    lines = objects(resource.get("dosageInstruction"))
    if not lines:
        return OrderDose(None, None)
    if len(lines) > MAX_DOSAGE_LINES:  # not read: nor is the most a day known
        return OrderDose(None, None)
    read = [_dosage_line(d, medication_text, drug) for d in lines]
    steps: dict[int, list[float | None]] = {}  # numbered steps, one after the other
    always: list[float | None] = []  # lines without a sequence: alongside every step
    for dosage, line in zip(lines, read, strict=True):
        sequence = dosage.get("sequence")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            steps.setdefault(sequence, []).append(line[2])
        else:
            always.append(line[2])
    tops = [_total(step + always) for step in steps.values()] or [_total(always)]
    top = None if None in tops else max(t for t in tops if t is not None)
    if len(read) == 1:
        return OrderDose(read[0][0], read[0][1], top)
    same_dose = {line[0] for line in read}
    return OrderDose(same_dose.pop() if len(same_dose) == 1 else None, None, top)


def _total(values: list[float | None]) -> float | None:
    return None if None in values else sum(v for v in values if v is not None)


#: Dosage lines read per order (a real order has a handful).
MAX_DOSAGE_LINES = 20


def _dosage_line(
    dosage: dict[str, Any], medication_text: str, drug: str
) -> tuple[float | None, float | None, float | None]:
    """(mg per dose, doses per day, the most mg a day) of one dosage line."""
    quantity = as_dict(dosage.get("doseQuantity"))
    dose_range = as_dict(dosage.get("doseRange"))
    for rate in objects(dosage.get("doseAndRate")):
        quantity = as_dict(rate.get("doseQuantity")) or quantity
        dose_range = as_dict(rate.get("doseRange")) or dose_range
    free = " ".join(
        [as_str(dosage.get("text")), *texts(as_dict(dosage.get("timing")).get("code"))]
    )[:MAX_TEXT_READ].lower()
    if dose_range:  # "1 to 2 tablets": no one dose to compute with; the most is the upper end
        mg, top_mg = None, _quantity_mg(as_dict(dose_range.get("high")), medication_text, drug)
    else:
        mg = _quantity_mg(quantity, medication_text, drug)
        if mg is None:
            mg = _free_text_mg(free, medication_text, drug)
        top_mg = mg
    timing = as_dict(dosage.get("timing"))
    per_day = _doses_per_day(timing, free)
    top_per_day = _doses_per_day(timing, free, most=True)
    top = top_mg * top_per_day if top_mg is not None and top_per_day is not None else None
    return mg, per_day, top


def _quantity_mg(quantity: dict[str, Any], medication_text: str, drug: str) -> float | None:
    value = quantity.get("value")
    unit = (as_str(quantity.get("unit")) or as_str(quantity.get("code"))).strip().lower()
    if unit.startswith("{") and unit.endswith("}") and unit.count("{") == 1:
        unit = unit[1:-1].strip()  # a UCUM annotation: '{pill}' (the public sandbox), '{tablet}'
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6:
        if unit in _UNITS_MG:
            return float(value)
        if unit in _UNITS_UNIT or not unit:
            strength = strength_mg(medication_text, drug)
            return float(value) * strength if strength is not None else None
    return None


def _free_text_mg(free: str, medication_text: str, drug: str) -> float | None:
    # (?<!\d): a number is tried from its first digit only, not again from each of its
    # digits (a run of digits would otherwise cost time growing with its square)
    m = re.search(r"(?<!\d)(\d+(?:\.\d+)?)\s*mg\b", free)
    if m:
        return float(m.group(1))
    # "1 tablet at bedtime": units of the product's strength
    m = re.search(r"(?<!\d)(\d+(?:\.\d+)?)\s*(?:tablet|tab|capsule|cap|pill)s?\b", free)
    strength = strength_mg(medication_text, drug) if m else None
    return float(m.group(1)) * strength if m and strength is not None else None


def _doses_per_day(timing: dict[str, Any], free: str, *, most: bool = False) -> float | None:
    """Doses a day; ``most``: the most a day (``frequencyMax`` where given)."""
    repeat = as_dict(timing.get("repeat"))
    frequency = repeat.get("frequency", 1)
    if most and "frequencyMax" in repeat:
        frequency = repeat.get("frequencyMax")
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


_BIRTH_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def current_date() -> date:
    """The day the age and date rules reckon with (one place, so a test can fix it)."""
    return date.today()


def birth_date_precision(patient: dict[str, Any] | None) -> str | None:
    """'year', 'month' or 'day': how much of the patient's ``birthDate`` is given."""
    m = _BIRTH_DATE.fullmatch(as_str((patient or {}).get("birthDate")).strip())
    if not m:
        return None
    return "day" if m.group(3) else "month" if m.group(2) else "year"


def age_range(patient: dict[str, Any] | None, today: date | None = None) -> tuple[int, int] | None:
    """The youngest and oldest whole-year age the patient's ``birthDate`` allows, or None.

    A full date gives one age. FHIR allows a year or a year and month alone: then every day of
    that period could be the birthday ('2020' is 5 or 6 years old on 2026-06-01)."""
    birth = as_str((patient or {}).get("birthDate"))
    m = _BIRTH_DATE.fullmatch(birth.strip())
    if not m:
        return None
    today = today or current_date()
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
