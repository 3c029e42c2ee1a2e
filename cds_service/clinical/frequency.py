"""How often a dosage line says to take a dose, read the way prescribers and EHRs write it.

Structured ``timing`` first: ``repeat`` (``frequency``/``frequencyMax`` per ``period``/
``periodMax``, ``when``, ``timeOfDay``) and the HL7 GTS codes of ``timing.code`` (BID, Q6H,
…); then the words of ``timing.code.text``, ``text`` and ``patientInstruction``: "three times
daily", "3 times a day", "twice daily", "every 6 hours", "q6h", "q4-6h prn", "BID/TID/QID",
"at bedtime", "every morning and at bedtime", "1-2 times daily". Maximum-per-day clauses ("do
not exceed 4 tablets daily", "max 3200 mg/day", "no more than 6 doses in 24 hours") are read as
caps, never as a frequency ("daily" in them is not once a day).

Two readings of one line that disagree (the structured timing says once a day, the text three
times; or the text says both "twice daily" and "at bedtime"), "divided doses", or nothing
readable: the frequency is unknown, never the lower reading. The caller then treats the daily
dose as unknown, and the card gives the guideline's full advice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..core.wording import number
from ..fhir.values import as_dict, as_str, objects, texts

#: How many days a ``periodUnit`` lasts.
_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0}
#: HL7 v3 GTS abbreviations (``timing.code``): doses a day.
GTS = {
    "BID": 2.0,
    "TID": 3.0,
    "QID": 4.0,
    "AM": 1.0,
    "PM": 1.0,
    "QD": 1.0,
    "QOD": 0.5,
    "Q1H": 24.0,
    "Q2H": 12.0,
    "Q3H": 8.0,
    "Q4H": 6.0,
    "Q6H": 4.0,
    "Q8H": 3.0,
    "BED": 1.0,
    "WK": 1 / 7,
    "MO": 1 / 30,
}
_GTS_SYSTEMS = {
    "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",
    "http://hl7.org/fhir/v3/GTSAbbreviation",
}
#: ``Timing.repeat.when`` codes a replacement may carry over (events of the day).
_WHEN = frozenset(
    [
        "MORN",
        "MORN.early",
        "MORN.late",
        "NOON",
        "AFT",
        "AFT.early",
        "AFT.late",
        "EVE",
        "EVE.early",
        "EVE.late",
        "NIGHT",
        "PHS",
        "IMD",
        "HS",
        "WAKE",
        "C",
        "CM",
        "CD",
        "CV",
        "AC",
        "ACM",
        "ACD",
        "ACV",
        "PC",
        "PCM",
        "PCD",
        "PCV",
    ]
)


@dataclass(frozen=True)
class Frequency:
    """Doses a day: ``low`` to ``high`` (equal unless the instruction gives a range)."""

    low: float
    high: float
    #: the same as a FHIR ``Timing.repeat`` (for a replacement that keeps the interval)
    repeat: tuple[tuple[str, Any], ...]
    words: str  # "every 8 hours", "3 times a day", "at bedtime"

    @property
    def exact(self) -> bool:
        return abs(self.high - self.low) < 1e-9

    def same(self, other: Frequency) -> bool:
        return abs(self.low - other.low) < 1e-6 and abs(self.high - other.high) < 1e-6

    def as_repeat(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.repeat}


@dataclass(frozen=True)
class Cap:
    """The most a day a maximum clause allows: ``amount`` of ``unit`` ('unit' = tablets,
    capsules and the like; 'mg'; 'dose' = administrations)."""

    amount: float
    unit: str


@dataclass(frozen=True)
class Timing:
    """What a dosage line says about when: the frequency (None: unknown), caps, as needed."""

    frequency: Frequency | None
    caps: tuple[Cap, ...] = ()
    as_needed: bool = False
    #: why the frequency is unknown (for the trace), or "" when known
    problem: str = ""


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6:
        return float(value)
    return None


# -- structured timing ------------------------------------------------------------------------


def _from_repeat(repeat: dict[str, Any]) -> Frequency | str | None:
    """The frequency ``Timing.repeat`` states; a string says why it cannot be read; None when it
    says nothing about frequency."""
    when = [w for w in (as_str(x) for x in _list(repeat.get("when"))) if w]
    times = [t for t in _list(repeat.get("timeOfDay")) if isinstance(t, str)]
    has_rate = any(k in repeat for k in ("frequency", "period", "frequencyMax", "periodMax"))
    events = len(set(when)) + len(set(times))
    if not has_rate:
        if not events:
            return None
        if any(w not in _WHEN for w in when):
            return "timing.repeat.when has a code this service does not know"
        per_day = float(events)
        out: dict[str, Any] = {"frequency": events, "period": 1, "periodUnit": "d"}
        if when:
            out["when"] = tuple(sorted(set(when)))
        return _frequency(per_day, per_day, out, _times_a_day(per_day, per_day))
    unit = as_str(repeat.get("periodUnit"))
    frequency = _num(repeat.get("frequency", 1))
    most = _num(repeat.get("frequencyMax", repeat.get("frequency", 1)))
    period = _num(repeat.get("period"))
    longest = _num(repeat.get("periodMax", repeat.get("period")))
    if None in (frequency, most, period, longest) or unit not in _DAYS:
        return "timing.repeat has no usable frequency, period and periodUnit"
    assert frequency is not None and most is not None and period is not None
    assert longest is not None
    if most < frequency or longest < period:
        return "timing.repeat: frequencyMax or periodMax below frequency or period"
    low = frequency / (longest * _DAYS[unit])
    high = most / (period * _DAYS[unit])
    if events and not (abs(low - events) < 1e-9 and abs(high - events) < 1e-9):
        return "timing.repeat: its when/timeOfDay and its frequency disagree"
    if any(w not in _WHEN for w in when):
        return "timing.repeat.when has a code this service does not know"
    out = {"frequency": _int(frequency), "period": _int(period), "periodUnit": unit}
    if most != frequency:
        out["frequencyMax"] = _int(most)
    if longest != period:
        out["periodMax"] = _int(longest)
    if when:
        out["when"] = tuple(sorted(set(when)))
    return _frequency(low, high, out, _describe(frequency, most, period, longest, unit))


def _int(value: float) -> float | int:
    return int(value) if value == int(value) else value


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _frequency(low: float, high: float, repeat: dict[str, Any], words: str) -> Frequency:
    return Frequency(low, high, tuple(sorted(repeat.items())), words)


_UNIT_WORDS = {"h": "hour", "d": "day", "wk": "week", "mo": "month", "min": "minute", "s": "second"}


def _describe(frequency: float, most: float, period: float, longest: float, unit: str) -> str:
    name = _UNIT_WORDS.get(unit, unit)
    if frequency == most == 1 and (unit == "h" or period > 1 or longest > period):
        if period == longest == 1:
            return f"every {name}"
        span = number(period) if period == longest else f"{number(period)}–{number(longest)}"
        return f"every {span} {name}s"
    if unit == "d" and period == longest == 1:
        return _times_a_day(frequency, most)
    times = number(frequency) if frequency == most else f"{number(frequency)}–{number(most)}"
    per = name if period == longest == 1 else f"{number(period)} {name}s"
    return "once a day" if (times, per) == ("1", "day") else f"{times} times a {per}"


def _times_a_day(low: float, high: float) -> str:
    if low == high:
        return {1: "once a day", 2: "twice a day"}.get(int(low), f"{number(low)} times a day")
    return f"{number(low)}–{number(high)} times a day"


def _from_codes(code: dict[str, Any]) -> list[Frequency]:
    found = []
    for coding in objects(code.get("coding")):
        abbreviation = as_str(coding.get("code")).upper()
        system = as_str(coding.get("system"))
        if abbreviation in GTS and (not system or system in _GTS_SYSTEMS):
            per_day = GTS[abbreviation]
            found.append(_gts(abbreviation, per_day))
    return found


def _gts(abbreviation: str, per_day: float) -> Frequency:
    if abbreviation.startswith("Q") and abbreviation.endswith("H"):
        hours = int(abbreviation[1:-1])
        repeat: dict[str, Any] = {"frequency": 1, "period": hours, "periodUnit": "h"}
        return _frequency(per_day, per_day, repeat, f"every {hours} hours")
    when = {"AM": "MORN", "PM": "EVE", "BED": "HS"}.get(abbreviation)
    if abbreviation == "QOD":
        return _frequency(
            0.5, 0.5, {"frequency": 1, "period": 2, "periodUnit": "d"}, "every 2 days"
        )
    if abbreviation in ("WK", "MO"):
        unit = "wk" if abbreviation == "WK" else "mo"
        return _frequency(per_day, per_day, {"frequency": 1, "period": 1, "periodUnit": unit}, "")
    repeat = {"frequency": int(per_day), "period": 1, "periodUnit": "d"}
    if when:
        repeat["when"] = (when,)
    return _frequency(per_day, per_day, repeat, _times_a_day(per_day, per_day))


# -- words ------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "eight": 8,
    "twelve": 12,
    "once": 1,
    "twice": 2,
    "thrice": 3,
}
_N = r"(?:\d+(?:\.\d+)?|one|two|three|four|five|six|eight|twelve)"
_DAY = r"(?:a|per|each|every|in|/)?\s*(?:day|daily|d\b|24\s*(?:hours?|hrs?|h)\b)"
_UNITS = (
    r"(?:tablets?|tabs?|capsules?|caps?|pills?|suppositor(?:y|ies)|doses?|mg|milligrams?|times)"
)
#: Maximum-per-day clauses, read as caps and taken out before the frequency is read.
_CAP = re.compile(
    r"(?:(?:do\s+)?not\s+(?:to\s+)?exceed|don'?t\s+exceed|no\s+more\s+than|not\s+more\s+than|"
    r"(?:do\s+)?not\s+take\s+more\s+than|"
    r"never\s+more\s+than|max(?:imum)?\.?(?:\s+(?:of|dose|daily\s+dose))?:?|up\s+to\s+a\s+max"
    r"(?:imum)?\s+of|limit(?:\s+to)?)\s*(?P<n>" + _N + r")\s*(?P<unit>" + _UNITS + r")\s*"
    r"(?:(?:a|per|in|each|every|/)\s*)?(?:day|daily|24\s*(?:hours?|hrs?|h)\b|24-hour\s+period)"
)
_TIMES = (  # (a number never starts inside another: no quadratic scan of a run of digits)
    r"(?:(?P<upto>up\s+to\s+)?(?<![\w.])(?:(?P<n>"
    + _N
    + r")(?:\s*(?:-|to|or)\s*(?P<m>"
    + _N
    + r"))?\s*(?:times|x)|(?P<w>once|twice|thrice)(?:\s*(?:-|to|or)\s*(?:(?P<w2>twice|thrice)|"
    r"(?P<m2>" + _N + r")\s*times))?))\s*"
)
_TEXT_PATTERNS: list[tuple[str, str]] = [
    ("other_day", r"every\s+other\s+day|(?<![a-z])q\.?o\.?d\.?(?![a-z])|on\s+alternate\s+days"),
    (
        "morning_night",
        r"(?:every|in\s+the|each)\s+morning\s+and\s+(?:at\s+|every\s+|in\s+the\s+)?"
        r"(?:bedtime|night|evening)|morning\s+and\s+(?:evening|night|bedtime)",
    ),
    ("n_week", _TIMES.replace("?P<", "?P<k") + r"(?:a|per|each|every|/)?\s*(?:week|wk)(?![a-z])"),
    ("n_day", _TIMES + _DAY),
    (
        "hours",
        r"(?<![a-z])(?:every|each|q)\s*(?P<h>\d+(?:\.\d+)?)(?:\s*(?:-|to|or)\s*"
        r"(?P<h2>\d+(?:\.\d+)?))?\s*(?:hours?|hrs?|h)(?![a-z])",
    ),
    ("every_hour", r"every\s+hour(?![a-z])"),
    (
        "abbrev",
        r"(?<![a-z])(?P<abbr>b\.?i\.?d|t\.?i\.?d|q\.?i\.?d|bd|tds|qds|q\.?d|qam|qpm|"
        r"qhs|q\.?h\.?s|h\.?s|mane|nocte)\.?(?![a-z])",
    ),
    ("bedtime", r"(?:at\s+)?bedtime|(?:at|every|each)\s+night|nightly"),
    ("evening", r"(?:in\s+the|every|each)\s+evening"),
    ("morning", r"(?:every|each|in\s+the)\s+morning"),
    ("weekly", r"(?<![a-z])weekly(?![a-z])"),
    ("daily", r"(?<![a-z])(?:daily|every\s+day|each\s+day|a\s+day|per\s+day)(?![a-z])"),
]
_TEXT = re.compile("|".join(f"(?P<g{i}>{p})" for i, (_, p) in enumerate(_TEXT_PATTERNS)))
_AS_NEEDED = re.compile(
    r"(?<![a-z])(?:as\s+needed|p\.?r\.?n\.?|when\s+required|if\s+needed)"
    r"(?![a-z])"
)
_DIVIDED = re.compile(r"divided|in\s+\d+\s+doses|split\s+(?:into|in)")
_ABBREVIATIONS = {
    "bid": 2.0,
    "bd": 2.0,
    "tid": 3.0,
    "tds": 3.0,
    "qid": 4.0,
    "qds": 4.0,
    "qd": 1.0,
    "qam": 1.0,
    "qpm": 1.0,
    "qhs": 1.0,
    "hs": 1.0,
    "mane": 1.0,
    "nocte": 1.0,
}


def _value(word: str | None) -> float | None:
    if word is None:
        return None
    word = word.strip()
    if word in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[word])
    try:
        return float(word)
    except ValueError:
        return None


def normalise(text: str) -> str:
    """Lower case, one kind of dash and of space: what the patterns read."""
    text = text.lower().replace("\u2013", "-").replace("\u2014", "-").replace("\u2010", "-")
    return re.sub(r"\s+", " ", text)


def caps_in(text: str) -> tuple[list[Cap], str]:
    """The maximum-per-day clauses of ``text`` and the text without them."""
    caps = []
    for m in _CAP.finditer(text):
        amount = _value(m.group("n"))
        unit = m.group("unit")
        if amount is None:
            continue
        kind = (
            "mg"
            if unit.startswith(("mg", "milligram"))
            else "dose"
            if unit.startswith(("dose", "time"))
            else "unit"
        )
        caps.append(Cap(amount, kind))
    return caps, _CAP.sub(" ; ", text)


def _from_text(text: str) -> list[Frequency]:
    """Every frequency the words of ``text`` state (caps already taken out)."""
    found: list[Frequency] = []
    for m in _TEXT.finditer(text):
        index = next(i for i in range(len(_TEXT_PATTERNS)) if m.group(f"g{i}") is not None)
        kind = _TEXT_PATTERNS[index][0]
        reading = _reading(kind, m)
        if reading is not None:
            found.append(reading)
    return found


def _reading(kind: str, m: re.Match[str]) -> Frequency | None:
    groups = {k: v for k, v in m.groupdict().items() if v is not None}
    if kind == "other_day":
        return _frequency(
            0.5, 0.5, {"frequency": 1, "period": 2, "periodUnit": "d"}, "every 2 days"
        )
    if kind == "morning_night":
        repeat: dict[str, Any] = {
            "frequency": 2,
            "period": 1,
            "periodUnit": "d",
            "when": ("HS", "MORN"),
        }
        return _frequency(2, 2, repeat, "in the morning and at bedtime")
    if kind in ("n_day", "n_week"):
        if kind == "n_week":
            groups = {k[1:]: v for k, v in groups.items()}
        first = groups.get("n") or groups.get("w")
        low = _value(first)
        high = _value(groups.get("m") or groups.get("w2") or groups.get("m2") or first)
        if low is None or high is None or high < low or low <= 0:
            return None
        if "upto" in groups:
            low = 1.0 if high >= 1 else high
        unit = "wk" if kind == "n_week" else "d"
        scale = 1 / 7 if unit == "wk" else 1.0
        repeat = {"frequency": _int(low), "period": 1, "periodUnit": unit}
        if high != low:
            repeat["frequencyMax"] = _int(high)
        words = (
            _times_a_day(low, high)
            if unit == "d"
            else f"{number(low) if low == high else f'{number(low)}–{number(high)}'} times a week"
        )
        return _frequency(low * scale, high * scale, repeat, words)
    if kind == "hours":
        hours, longest = _value(groups.get("h")), _value(groups.get("h2") or groups.get("h"))
        if not hours or not longest or longest < hours:
            return None
        repeat = {"frequency": 1, "period": _int(hours), "periodUnit": "h"}
        if longest != hours:
            repeat["periodMax"] = _int(longest)
        span = number(hours) if hours == longest else f"{number(hours)}–{number(longest)}"
        return _frequency(24 / longest, 24 / hours, repeat, f"every {span} hours")
    if kind == "every_hour":
        return _frequency(24, 24, {"frequency": 1, "period": 1, "periodUnit": "h"}, "every hour")
    if kind == "abbrev":
        abbreviation = groups["abbr"].replace(".", "")
        per_day = _ABBREVIATIONS.get(abbreviation)
        if per_day is None:
            return None
        when = {"qhs": "HS", "hs": "HS", "nocte": "HS", "qam": "MORN", "mane": "MORN"}.get(
            abbreviation
        )
        repeat = {"frequency": int(per_day), "period": 1, "periodUnit": "d"}
        if when:
            repeat["when"] = (when,)
            return _frequency(per_day, per_day, repeat, _WHEN_WORDS[when])
        return _frequency(per_day, per_day, repeat, _times_a_day(per_day, per_day))
    if kind in ("bedtime", "morning", "evening"):
        when = {"bedtime": "HS", "morning": "MORN", "evening": "EVE"}[kind]
        repeat = {"frequency": 1, "period": 1, "periodUnit": "d", "when": (when,)}
        return _frequency(1, 1, repeat, _WHEN_WORDS[when])
    if kind == "weekly":
        return _frequency(1 / 7, 1 / 7, {"frequency": 1, "period": 1, "periodUnit": "wk"}, "weekly")
    if kind == "daily":
        return _frequency(1, 1, {"frequency": 1, "period": 1, "periodUnit": "d"}, "once a day")
    return None


_WHEN_WORDS = {"HS": "at bedtime", "MORN": "in the morning", "EVE": "in the evening"}


def _agree(readings: list[Frequency]) -> Frequency | None:
    """One frequency if every reading says the same (their ``when`` codes merged)."""
    if not readings or any(not r.same(readings[0]) for r in readings[1:]):
        return None
    # prefer the reading that says the most (one with a time of day), then the first
    return max(readings, key=lambda r: len(r.repeat))


def read_timing(dosage: dict[str, Any], extra_text: str = "") -> Timing:
    """What a dosage line says about when (see the module's notes)."""
    timing = as_dict(dosage.get("timing"))
    code = as_dict(timing.get("code"))
    words = normalise(
        " ; ".join(
            t
            for t in (
                as_str(dosage.get("text")),
                as_str(dosage.get("patientInstruction")),
                *texts(code),
                extra_text,
            )
            if t
        )
    )[:_MAX_TEXT]
    spoken_caps, said_as_needed, spoken, divided = _read_words(words)
    caps = [*spoken_caps, *_structured_caps(dosage)]
    as_needed = dosage.get("asNeededBoolean") is True or said_as_needed
    structured: list[Frequency] = []
    repeat = as_dict(timing.get("repeat"))
    from_repeat = _from_repeat(repeat) if repeat else None
    if isinstance(from_repeat, str):
        return Timing(None, tuple(caps), as_needed, from_repeat)
    if from_repeat is not None:
        structured.append(from_repeat)
    structured += _from_codes(code)
    if divided:
        return Timing(None, tuple(caps), as_needed, "the text says 'divided doses': how many?")
    readings = structured + list(spoken)
    if not readings:
        return Timing(None, tuple(caps), as_needed, "no frequency stated")
    agreed = _agree(readings)
    if agreed is None:
        said = "; ".join(sorted({r.words or _times_a_day(r.low, r.high) for r in readings}))
        return Timing(None, tuple(caps), as_needed, f"the frequencies stated disagree ({said})")
    return Timing(agreed, tuple(caps), as_needed)


#: Characters of a dosage line's words read (a real instruction is a line or two).
_MAX_TEXT = 500


@lru_cache(maxsize=1024)
def _read_words(words: str) -> tuple[tuple[Cap, ...], bool, tuple[Frequency, ...], bool]:
    """(caps, as needed, frequencies, 'divided doses') of a line's words: read once per
    distinct text (a request with many orders repeats the same instruction)."""
    caps, rest = caps_in(words)
    return (
        tuple(caps),
        bool(_AS_NEEDED.search(rest)),
        tuple(_from_text(rest)),
        bool(_DIVIDED.search(rest)),
    )


def _structured_caps(dosage: dict[str, Any]) -> list[Cap]:
    caps = []
    for item in objects(dosage.get("maxDosePerPeriod")):
        numerator, denominator = as_dict(item.get("numerator")), as_dict(item.get("denominator"))
        amount, length = _num(numerator.get("value")), _num(denominator.get("value"))
        unit = (as_str(denominator.get("code")) or as_str(denominator.get("unit"))).lower()
        days = {"d": 1, "day": 1, "days": 1, "h": 1 / 24, "hour": 1 / 24, "hours": 1 / 24}.get(unit)
        if amount is None or length is None or days is None:
            continue
        per_day = amount / (length * days) if length * days >= 1 else None
        if per_day is None:
            continue  # a cap over less than a day says nothing certain about the day
        kind = _quantity_kind(numerator)
        if kind:
            caps.append(Cap(per_day, kind))
    return caps


def _quantity_kind(quantity: dict[str, Any]) -> str | None:
    unit = (as_str(quantity.get("unit")) or as_str(quantity.get("code"))).strip().lower()
    unit = unit.strip("{}")
    if unit in ("mg", "milligram", "milligrams"):
        return "mg"
    if unit in UNIT_WORDS or not unit:
        return "unit"
    return None


#: Words for one tablet, capsule, pill or suppository (also as UCUM annotations: '{pill}').
UNIT_WORDS = frozenset(
    {
        "tablet",
        "tablets",
        "tab",
        "tabs",
        "capsule",
        "capsules",
        "cap",
        "caps",
        "pill",
        "pills",
        "1",
        "tbl",
        "suppository",
        "suppositories",
    }
)
