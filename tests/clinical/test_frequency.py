"""How often a dosage line says to take a dose (issue 23, item 1): every form prescribers and
EHRs write is read right, or as unknown, never as another frequency."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.clinical.frequency import Cap, read_timing

# (words, fewest doses a day, most doses a day)
FORMS: list[tuple[str, float, float]] = [
    ("once daily", 1, 1),
    ("once a day", 1, 1),
    ("daily", 1, 1),
    ("every day", 1, 1),
    ("twice daily", 2, 2),
    ("twice a day", 2, 2),
    ("two times a day", 2, 2),
    ("2 times daily", 2, 2),
    ("2x daily", 2, 2),
    ("three times daily", 3, 3),
    ("three times a day", 3, 3),
    ("three times per day", 3, 3),
    ("3 times a day", 3, 3),
    ("3 x daily", 3, 3),
    ("3 times per day", 3, 3),
    ("four times daily", 4, 4),
    ("4 times a day", 4, 4),
    ("every 4 hours", 6, 6),
    ("every 6 hours", 4, 4),
    ("every 8 hours", 3, 3),
    ("every 12 hours", 2, 2),
    ("every 24 hours", 1, 1),
    ("q4h", 6, 6),
    ("q6h", 4, 4),
    ("q 6 h", 4, 4),
    ("q6hr", 4, 4),
    ("q8h", 3, 3),
    ("q12h", 2, 2),
    ("q4-6h", 4, 6),
    ("q4-6h prn", 4, 6),
    ("every 4-6 hours", 4, 6),
    ("every 4 to 6 hours", 4, 6),
    ("every 6-8 hours", 3, 4),
    ("BID", 2, 2),
    ("b.i.d.", 2, 2),
    ("TID", 3, 3),
    ("t.i.d.", 3, 3),
    ("QID", 4, 4),
    ("q.i.d.", 4, 4),
    ("QD", 1, 1),
    ("at bedtime", 1, 1),
    ("nightly", 1, 1),
    ("at night", 1, 1),
    ("qhs", 1, 1),
    ("every morning", 1, 1),
    ("in the morning and at bedtime", 2, 2),
    ("1-2 times daily", 1, 2),
    ("1 to 2 times a day", 1, 2),
    ("once or twice daily", 1, 2),
    ("one to two times daily", 1, 2),
    ("2-3 times daily", 2, 3),
    ("up to 4 times a day", 1, 4),
    ("every other day", 0.5, 0.5),
]
PREFIXES = [
    "",
    "Take 1 tablet by mouth ",
    "Take 1 tablet (25 mg) by mouth ",
    "1 tab PO ",
    "Take 2 capsules ",
    "Sig: 1 cap ",
]
SUFFIXES = [
    "",
    " as needed",
    " as needed for pain",
    " with food",
    " prn",
    " for 5 days",
    " with meals",
]
CAPS: list[tuple[str, Cap | None]] = [
    ("", None),
    ("; do not exceed 4 tablets daily", Cap(4, "unit")),
    (", max 6 tablets per day", Cap(6, "unit")),
    ("; not to exceed 3200 mg/day", Cap(3200, "mg")),
    ("; no more than 4 doses in 24 hours", Cap(4, "dose")),
    (". Maximum 8 tablets in 24 hours", Cap(8, "unit")),
]


def timing(text: str, **dosage: Any):
    return read_timing({"text": text, **dosage})


@settings(max_examples=400, deadline=None)
@given(
    form=st.sampled_from(FORMS),
    prefix=st.sampled_from(PREFIXES),
    suffix=st.sampled_from(SUFFIXES),
    cap=st.sampled_from(CAPS),
    upper=st.booleans(),
)
def test_every_written_form_is_read_right(form, prefix, suffix, cap, upper):
    words, low, high = form
    text = prefix + words + suffix + cap[0]
    read = timing(text.upper() if upper else text)
    assert read.frequency is not None, (text, read.problem)
    assert (read.frequency.low, read.frequency.high) == pytest.approx((low, high)), text
    if cap[1] is not None:
        assert cap[1] in read.caps, text
    assert read.as_needed == ("prn" in text.lower() or "as needed" in text.lower())


@settings(max_examples=300, deadline=None)
@given(first=st.sampled_from(FORMS), second=st.sampled_from(FORMS))
def test_two_forms_in_one_line_are_read_only_when_they_agree(first, second):
    """'Twice daily at bedtime': the line says two things; unknown, never the lower one."""
    text = f"1 tablet {first[0]}; {second[0]}"
    read = timing(text)
    if (first[1], first[2]) == (second[1], second[2]):
        assert read.frequency is not None, (text, read.problem)
        assert (read.frequency.low, read.frequency.high) == pytest.approx((first[1], first[2]))
    else:
        assert read.frequency is None, text
        assert "disagree" in read.problem


REPEATS: list[tuple[dict[str, Any], float, float]] = [
    ({"frequency": 3, "period": 1, "periodUnit": "d"}, 3, 3),
    ({"frequency": 1, "period": 8, "periodUnit": "h"}, 3, 3),
    ({"frequency": 1, "period": 4, "periodMax": 6, "periodUnit": "h"}, 4, 6),
    ({"frequency": 1, "frequencyMax": 2, "period": 1, "periodUnit": "d"}, 1, 2),
    ({"frequency": 2, "period": 1, "periodUnit": "d", "when": ["MORN", "HS"]}, 2, 2),
    ({"when": ["HS"]}, 1, 1),
    ({"timeOfDay": ["08:00:00", "20:00:00"]}, 2, 2),
    ({"frequency": 1, "period": 1, "periodUnit": "wk"}, 1 / 7, 1 / 7),
]


@settings(max_examples=200, deadline=None)
@given(repeat=st.sampled_from(REPEATS), form=st.sampled_from([*FORMS, ("as directed", 0, 0)]))
def test_structured_timing_and_words_must_agree(repeat, form):
    structure, low, high = repeat
    read = read_timing({"timing": {"repeat": structure}, "text": f"1 tablet {form[0]}"})
    if form[0] == "as directed" or (form[1], form[2]) == (low, high):
        assert read.frequency is not None, (structure, form, read.problem)
        assert (read.frequency.low, read.frequency.high) == pytest.approx((low, high))
    else:
        assert read.frequency is None, (structure, form)


@pytest.mark.parametrize(
    ("code", "per_day"),
    [("BID", 2), ("TID", 3), ("QID", 4), ("Q6H", 4), ("Q4H", 6), ("QD", 1), ("BED", 1)],
)
def test_gts_timing_codes(code, per_day):
    gts = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
    read = read_timing({"timing": {"code": {"coding": [{"system": gts, "code": code}]}}})
    assert read.frequency is not None and read.frequency.low == read.frequency.high == per_day


@pytest.mark.parametrize(
    "text",
    [
        "as directed",
        "75 mg a day in divided doses",
        "take as instructed by your doctor",
        "twice daily at bedtime",
        "three times daily; once daily",
    ],
)
def test_nothing_readable_or_a_contradiction_is_unknown(text):
    read = timing(text)
    assert read.frequency is None and read.problem


def test_a_maximum_clause_is_a_cap_not_a_frequency():
    """'Do not exceed 4 tablets daily' alone says how much at most, not how often."""
    read = timing("1 tablet as needed; do not exceed 4 tablets daily")
    assert read.frequency is None and read.caps == (Cap(4, "unit"),) and read.as_needed


def test_max_dose_per_period_is_read_as_a_cap():
    read = read_timing(
        {
            "text": "1 tablet every 4 hours as needed",
            "maxDosePerPeriod": {
                "numerator": {"value": 6, "unit": "tablet"},
                "denominator": {"value": 24, "unit": "h", "code": "h"},
            },
        }
    )
    assert read.frequency is not None and read.frequency.high == 6
    assert Cap(6, "unit") in read.caps


def test_unknown_when_codes_and_inconsistent_repeats_are_not_read():
    assert read_timing({"timing": {"repeat": {"when": ["SOMETIME"]}}}).frequency is None
    bad = {"frequency": 3, "frequencyMax": 1, "period": 1, "periodUnit": "d"}
    assert read_timing({"timing": {"repeat": bad}}).frequency is None
    no_unit = {"frequency": 3, "period": 1}
    assert read_timing({"timing": {"repeat": no_unit}}).frequency is None


@pytest.mark.parametrize("text", ["9" * 5000, "1 " * 2500, "q" * 5000, "every 1" * 700])
def test_a_hostile_instruction_is_read_quickly(text):
    """A run of digits once took a fifth of a second per line (a number tried at every
    position); the words of one line are read in well under a millisecond or two."""
    import time

    from cds_service.clinical.order_details import order_dose

    started = time.perf_counter()
    for i in range(20):  # distinct texts: nothing cached
        order_dose(
            {"dosageInstruction": [{"text": f"{i} {text}"}]}, "Ibuprofen 800 MG", "ibuprofen"
        )
    assert (time.perf_counter() - started) / 20 < 0.02
