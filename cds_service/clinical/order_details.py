"""What a draft order says beyond its drug: the dose, how often, and why.

Reads R4 (``dosageInstruction.doseAndRate.doseQuantity``/``doseRange``), STU3/DSTU2
(``doseQuantity``) and free text ("10 mg at night", "1 tablet twice daily", "1-2 capsules");
how often is ``frequency.read_timing``. A dose in tablets or capsules is turned into
milligrams with the product's strength (the coded product's, else the name's: "amitriptyline
10 MG Oral Tablet"). The structured dose and the words must agree: two readings of one line
that disagree, like nothing readable, leave the dose unknown (None), never the lower reading;
the card then says what the guideline says without the order's own numbers. The route is the
coded product's dose form and each line's ``route`` and words, when they agree.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Any

import orjson

from ..core.wording import number
from ..fhir.values import as_dict, as_str, objects
from ..knowledge.loader import Knowledge
from ..knowledge.models import ProductForm
from .frequency import UNIT_WORDS, Cap, Frequency, caps_in, normalise, read_timing
from .medications import MAX_TEXT_READ, IdentifiedDrug

_UNITS_MG = {"mg", "milligram", "milligrams"}


@dataclass(frozen=True)
class OrderDose:
    mg_per_dose: float | None
    doses_per_day: float | None
    #: The most the order allows in a day: a dose range's upper end, ``frequencyMax``, a
    #: maximum-per-day clause, every dosage line taken together. None unless every line says it.
    max_mg_per_day: float | None = None
    #: One dosage line read in full (what a replacement keeping the regimen needs): tablets or
    #: capsules per dose, how often, caps, as needed.
    units_per_dose: float | None = None
    frequency: Frequency | None = None
    caps: tuple[Cap, ...] = ()
    as_needed: bool = False
    #: the lower and upper end of one dose where the order gives a range ("1 to 2 tablets")
    mg_range: tuple[float, float] | None = None
    #: why the dose or frequency is unknown, for the trace ("" when both are read)
    problem: str = ""

    @property
    def mg_per_day(self) -> float | None:
        if self.mg_per_dose is None or self.doses_per_day is None:
            return None
        return _capped(self.mg_per_dose * self.doses_per_day, self.mg_per_dose, self)

    @property
    def mg_per_day_range(self) -> tuple[float, float] | None:
        """The fewest and most mg a day of one read dosage line (a range of doses or of
        frequencies), or None."""
        low_dose = self.mg_range[0] if self.mg_range else self.mg_per_dose
        high_dose = self.mg_range[1] if self.mg_range else self.mg_per_dose
        if low_dose is None or high_dose is None or self.frequency is None:
            return None
        low = _capped(low_dose * self.frequency.low, low_dose, self)
        return low, _capped(high_dose * self.frequency.high, high_dose, self)

    def describe(self) -> str:
        parts = []
        if self.mg_per_dose is not None:
            parts.append(f"{number(self.mg_per_dose)} mg per dose")
        elif self.mg_range is not None:
            parts.append(f"{number(self.mg_range[0])}–{number(self.mg_range[1])} mg per dose")
        daily = self.mg_per_day_range
        if self.mg_per_day is not None:
            parts.append(f"{number(self.mg_per_day)} mg/day")
        elif daily is not None:
            parts.append(f"{number(daily[0])}–{number(daily[1])} mg/day")
        top = self.max_mg_per_day
        shown = self.mg_per_day if self.mg_per_day is not None else daily[1] if daily else None
        if top is not None and (shown is None or top > shown + 1e-9):
            parts.append(f"up to {number(top)} mg/day")
        text = ", ".join(parts) or "dose not stated"
        if self.frequency is not None and parts:
            text += f" ({self.frequency.words}{', as needed' if self.as_needed else ''})"
        return text


def _capped(mg: float, per_dose: float, dose: OrderDose) -> float:
    """``mg`` a day, no more than the order's maximum-per-day clauses allow."""
    for cap in dose.caps:
        if cap.unit == "mg":
            mg = min(mg, cap.amount)
        elif cap.unit == "dose":
            mg = min(mg, cap.amount * per_dose)
        elif cap.unit == "unit" and dose.units_per_dose and per_dose:
            mg = min(mg, cap.amount * per_dose / dose.units_per_dose)
    return mg


def strength_mg(medication_text: str, drug: str) -> float | None:
    """The strength of ``drug`` in a product name ('Acetaminophen 300 MG / Codeine 30 MG')."""
    text = medication_text[:MAX_TEXT_READ].lower()
    for part in text.split("/"):
        if drug in part:
            m = re.search(r"(?<!\d)(\d+(?:\.\d+)?)\s*mg\b(?!\s*/\s*(ml|hr))", part)
            if m:
                return float(m.group(1))
    return None


def product_form(drug: IdentifiedDrug, knowledge: Knowledge) -> ProductForm | None:
    """The ordered product's ingredients, form and route, when its RxNorm code is on file."""
    if not drug.matched_by.startswith("RxNorm "):
        return None
    return knowledge.product_forms.get(drug.matched_by.removeprefix("RxNorm "))


def drug_dose(drug: IdentifiedDrug, knowledge: Knowledge) -> OrderDose:
    """``order_dose`` of an identified drug, with its strength from the coded product (an
    RxNorm product's form; a SNOMED CT / dm+d product's stated strength)."""
    product = product_form(drug, knowledge)
    coded = product.strength_mg(drug.drug) if product else drug.coded_strength_mg
    named = strength_mg(drug.medication_text, drug.drug)
    combination = (
        len(product.ingredients) > 1
        if product
        else len(drug.ingredients) > 1
        if drug.ingredients
        else "/" in drug.medication_text
    )
    if coded is not None and named is not None and abs(coded - named) > 1e-9:
        # the code and the name disagree on the strength: no dose in tablets can be trusted
        dose = order_dose(
            drug.order.resource, "", drug.drug, strength=None, combination=combination
        )
        problem = (
            f"the product code says {number(coded)} mg of {drug.drug}, its name {number(named)} mg"
        )
        if dose.mg_range is None or dose.units_per_dose is not None:
            return OrderDose(None, None, None, problem=problem)
        return replace(dose, problem=problem, units_per_dose=None)
    return order_dose(
        drug.order.resource,
        drug.medication_text,
        drug.drug,
        strength=coded if coded is not None else named,
        combination=combination,
    )


def order_dose(
    resource: dict[str, Any],
    medication_text: str,
    drug: str,
    *,
    strength: float | None = None,
    combination: bool | None = None,
) -> OrderDose:
    """The ordered dose of ``drug`` in mg, how many doses a day, and the most a day, as far
    as stated. Several dosage lines are taken together (the same ``sequence`` at the same
    time, different ones one after the other, lines without one alongside every step): the
    most a day is then known, but not one dose and frequency to compute with."""
    lines = objects(resource.get("dosageInstruction"))
    if not lines:
        return OrderDose(None, None, problem="no dosage instruction")
    if len(lines) > MAX_DOSAGE_LINES:  # not read: nor is the most a day known
        return OrderDose(None, None, problem=f"more than {MAX_DOSAGE_LINES} dosage lines")
    if strength is None:
        strength = strength_mg(medication_text, drug)
    if combination is None:
        combination = "/" in medication_text
    read = [_read_line(d, strength, combination) for d in lines]
    steps: dict[int, list[float | None]] = {}  # numbered steps, one after the other
    always: list[float | None] = []  # lines without a sequence: alongside every step
    for dosage, line in zip(lines, read, strict=True):
        sequence = dosage.get("sequence")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            steps.setdefault(sequence, []).append(line.max_mg_per_day)
        else:
            always.append(line.max_mg_per_day)
    tops = [_total(step + always) for step in steps.values()] or [_total(always)]
    top = None if None in tops else max(t for t in tops if t is not None)
    if len(read) == 1:  # (a remembered line already holds its own most a day)
        return read[0] if read[0].max_mg_per_day == top else replace(read[0], max_mg_per_day=top)
    same_dose = {line.mg_per_dose for line in read}
    return OrderDose(
        same_dose.pop() if len(same_dose) == 1 else None,
        None,
        top,
        problem="several dosage lines: no one dose and frequency",
    )


def _total(values: list[float | None]) -> float | None:
    return None if None in values else sum(v for v in values if v is not None)


#: Dosage lines read per order (a real order has a handful).
MAX_DOSAGE_LINES = 20


#: Dosage lines read, by their JSON (an ordering session sends the same order with every
#: call): at most this many kept, each line's JSON at most ``_READ_KEY_LIMIT`` bytes.
_READ_LIMIT = 1024
_READ_KEY_LIMIT = 2048
_read: dict[tuple[bytes, float | None, bool], OrderDose] = {}


def _read_line(dosage: dict[str, Any], strength: float | None, combination: bool) -> OrderDose:
    """``_dosage_line``, remembered (its answer is an immutable ``OrderDose``)."""
    try:
        text = orjson.dumps(dosage, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # (an integer past 64 bits): read each time
        return _dosage_line(dosage, strength, combination)
    if len(text) > _READ_KEY_LIMIT:
        return _dosage_line(dosage, strength, combination)
    key = (text, strength, combination)
    found = _read.get(key)
    if found is None:
        found = _dosage_line(dosage, strength, combination)
        if len(_read) >= _READ_LIMIT:
            _read.clear()
        _read[key] = found
    return found


def _dosage_line(dosage: dict[str, Any], strength: float | None, combination: bool) -> OrderDose:
    """One dosage line: its dose (structured, and in words: both must agree), its timing."""
    words = normalise(
        " ; ".join(
            t for t in (as_str(dosage.get("text")), as_str(dosage.get("patientInstruction"))) if t
        )
    )[:MAX_TEXT_READ]
    timing = read_timing(dosage)
    structured = _structured_amounts(dosage)
    spoken = _spoken_amounts(words, combination)
    problem = timing.problem
    amounts = [a for a in (structured, *spoken) if a is not None]
    agreed = None
    if amounts and all(a.same(amounts[0], strength) for a in amounts):
        # the reading in tablets says the most (a replacement keeps the count)
        agreed = next((a for a in amounts if a.units is not None), amounts[0])
    if amounts and agreed is None:
        problem = "the doses stated disagree (" + "; ".join(a.words() for a in amounts) + ")"
    elif not amounts:
        problem = problem or "no dose stated"
    in_mg = agreed.in_mg(strength) if agreed else None
    mg_low, mg_high = in_mg if in_mg else (None, None)
    units = None
    if agreed is not None and agreed.exact:
        if agreed.units is not None:
            units = agreed.units[0]
        elif strength and mg_low is not None and float(mg_low / strength).is_integer():
            units = mg_low / strength  # '50 mg' of 25 mg tablets: 2 tablets
    single = mg_low if agreed is not None and agreed.exact else None
    frequency = timing.frequency
    line = OrderDose(
        single,
        frequency.low if frequency and frequency.exact else None,
        None,
        units_per_dose=units,
        frequency=frequency,
        caps=timing.caps,
        as_needed=timing.as_needed,
        mg_range=(mg_low, mg_high) if mg_low is not None and mg_high is not None else None,
        problem=problem,
    )
    return replace(line, max_mg_per_day=_most_a_day(line, mg_high, strength))


def _most_a_day(line: OrderDose, mg_high: float | None, strength: float | None) -> float | None:
    """The most mg a day a line allows: its largest dose at its most frequent, or what a
    maximum-per-day clause allows (whichever is less); None when neither is known."""
    tops = []
    if mg_high is not None and line.frequency is not None:
        tops.append(mg_high * line.frequency.high)
    for cap in line.caps:
        if cap.unit == "mg":
            tops.append(cap.amount)
        elif cap.unit == "unit" and strength:
            tops.append(cap.amount * strength)
        elif cap.unit == "dose" and mg_high is not None:
            tops.append(cap.amount * mg_high)
    return min(tops) if tops else None


@dataclass(frozen=True)
class _Amount:
    """One dose as one reading states it: in tablets and the like (``units``) or in mg; a
    range where the reading gives one."""

    units: tuple[float, float] | None = None
    mg: tuple[float, float] | None = None

    @property
    def exact(self) -> bool:
        low, high = self.mg or self.units or (0.0, 0.0)
        return low == high

    def in_mg(self, strength: float | None) -> tuple[float, float] | None:
        if self.mg is not None:
            return self.mg
        if self.units is not None and strength:
            return self.units[0] * strength, self.units[1] * strength
        return None

    def same(self, other: _Amount, strength: float | None) -> bool:
        if self.units is not None and other.units is not None:
            return _close(self.units, other.units)
        return _close(self.in_mg(strength), other.in_mg(strength))

    def words(self) -> str:
        if self.mg is not None:
            return f"{_span(*self.mg)} mg"
        low, high = self.units or (0.0, 0.0)
        return f"{_span(low, high)} tablet(s)"


def _close(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    if a is None or b is None:
        return False
    return abs(a[0] - b[0]) < 1e-6 and abs(a[1] - b[1]) < 1e-6


def _span(low: float, high: float) -> str:
    return number(low) if low == high else f"{number(low)}–{number(high)}"


def _structured_amounts(dosage: dict[str, Any]) -> _Amount | None:
    quantity = as_dict(dosage.get("doseQuantity"))
    dose_range = as_dict(dosage.get("doseRange"))
    for rate in objects(dosage.get("doseAndRate")):
        quantity = as_dict(rate.get("doseQuantity")) or quantity
        dose_range = as_dict(rate.get("doseRange")) or dose_range
    if dose_range:
        low = _quantity(as_dict(dose_range.get("low")))
        high = _quantity(as_dict(dose_range.get("high")))
        if high is None or (low is not None and low[1] != high[1]):
            return None
        low_value = low[0] if low is not None else high[0]
        if high[1] == "mg":
            return _Amount(mg=(low_value, high[0]))
        return _Amount(units=(low_value, high[0]))
    found = _quantity(quantity)
    if found is None:
        return None
    if found[1] == "mg":
        return _Amount(mg=(found[0], found[0]))
    return _Amount(units=(found[0], found[0]))


def _quantity(quantity: dict[str, Any]) -> tuple[float, str] | None:
    value = quantity.get("value")
    unit = (as_str(quantity.get("unit")) or as_str(quantity.get("code"))).strip().lower()
    if unit.startswith("{") and unit.endswith("}") and unit.count("{") == 1:
        unit = unit[1:-1].strip()  # a UCUM annotation: '{pill}' (the public sandbox), '{tablet}'
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6:
        if unit in _UNITS_MG:
            return float(value), "mg"
        if unit in UNIT_WORDS or not unit:
            return float(value), "unit"
    return None


_HALF = r"(?:1/2|½|half(?:\s+a)?|one-half|one\s+half)"
_AMOUNT = r"(?:\d+(?:\.\d+)?|" + _HALF + r"|one|two|three|four)"
_UNIT_AMOUNT = re.compile(
    r"(?<![\w.])(?P<a>" + _AMOUNT + r")(?:\s*(?:-|to|or)\s*(?P<b>" + _AMOUNT + r"))?\s*"
    r"(?:tablets?|tabs?|capsules?|caps?|pills?|suppositor(?:y|ies))(?![a-z])"
)
#: an mg amount that is a dose, not a strength ('25 mg tablet') nor a concentration ('mg/ml')
_MG_AMOUNT = re.compile(
    r"(?<![\w.])(?P<a>\d+(?:\.\d+)?)(?:\s*(?:-|to)\s*(?P<b>\d+(?:\.\d+)?))?\s*"
    r"(?:mg|milligrams?)(?![a-z/])(?!\s*(?:/|per\b|oral\b|tablets?\b|tabs?\b|capsules?\b|"
    r"caps?\b|extended\b|er\b|sr\b|ir\b))"
)
_AMOUNT_WORDS = {"one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0}


def _amount(word: str | None) -> float | None:
    if word is None:
        return None
    word = word.strip()
    if re.fullmatch(_HALF, word):
        return 0.5
    if word in _AMOUNT_WORDS:
        return _AMOUNT_WORDS[word]
    try:
        return float(word)
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _spoken_amounts(words: str, combination: bool) -> tuple[_Amount, ...]:
    """The doses the words state (maximum clauses left out): tablets ('1 tablet', '1-2
    capsules', 'half a tablet') and, for a single-ingredient product, mg ('(25 mg)'); a
    combination's mg could be any of its ingredients', so they are not read. Read once per
    distinct text."""
    _, words = caps_in(words)
    found = []
    for m in _UNIT_AMOUNT.finditer(words):
        low, high = _amount(m.group("a")), _amount(m.group("b") or m.group("a"))
        if low is not None and high is not None and 0 < low <= high:
            found.append(_Amount(units=(low, high)))
    if not combination:
        for m in _MG_AMOUNT.finditer(words):
            low, high = float(m.group("a")), float(m.group("b") or m.group("a"))
            if 0 < low <= high:
                found.append(_Amount(mg=(low, high)))
    return tuple(found)


_ROUTE_CODES = {
    "26643006": "oral",
    "47625008": "injection",  # intravenous
    "78421000": "injection",  # intramuscular
    "34206005": "injection",  # subcutaneous
    "37161004": "rectal",
    "37839007": "sublingual",
    "54471007": "buccal",
    "45890007": "transdermal",
    "6064005": "topical",
    "46713006": "nasal",
}
_ROUTE_WORDS = [
    ("oral", r"by\s+mouth|orally|oral|p\.?o\.?"),
    (
        "injection",
        r"intravenous(?:ly)?|i\.?v\.?|intramuscular(?:ly)?|i\.?m\.?|subcutaneous(?:ly)?|"
        r"s\.?c\.?|s\.?q\.?|inject(?:ion|ed)?|infus(?:ion|e)",
    ),
    ("rectal", r"rectal(?:ly)?|p\.?r\.?"),
    ("sublingual", r"sublingual(?:ly)?|s\.?l\.?|under\s+the\s+tongue"),
    ("transdermal", r"transdermal|patch"),
    ("topical", r"topical(?:ly)?|apply\s+to\s+(?:the\s+)?skin"),
]
_ROUTE_TEXT = re.compile(
    "|".join(f"(?P<r{i}>(?<![a-z])(?:{p})(?![a-z]))" for i, (_, p) in enumerate(_ROUTE_WORDS))
)


def order_route(resource: dict[str, Any], product: ProductForm | None) -> str | None:
    """The route the order gives: the product's (from its dose form), each dosage line's
    ``route`` and the route its words name. None when they disagree or none is stated."""
    stated = {product.route} if product and product.route else set()
    if product and not product.route:
        return None  # a product without a dose form: no route to keep
    for dosage in objects(resource.get("dosageInstruction")):
        route = as_dict(dosage.get("route"))
        for coding in objects(route.get("coding")):
            code = as_str(coding.get("code"))
            if code in _ROUTE_CODES:
                stated.add(_ROUTE_CODES[code])
            elif code:
                return None  # a route this service does not know: not the same as any
        words = normalise(" ".join([as_str(route.get("text")), as_str(dosage.get("text"))]))
        for m in _ROUTE_TEXT.finditer(words[:MAX_TEXT_READ]):
            index = next(i for i in range(len(_ROUTE_WORDS)) if m.group(f"r{i}") is not None)
            stated.add(_ROUTE_WORDS[index][0])
    return stated.pop() if len(stated) == 1 else None


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
