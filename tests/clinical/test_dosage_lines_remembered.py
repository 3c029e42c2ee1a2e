"""Dosage lines read once and remembered answer what reading them each time does."""

from __future__ import annotations

from cds_service.clinical import order_details

LINES = [
    {"text": "1 tablet every 6 hours as needed for pain, max 4 a day"},
    {"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}], "text": "2 tablets"},
    {"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}], "text": "3 tablets"},
    {"timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}}, "text": "30 mg"},
]


def test_a_remembered_line_reads_as_a_fresh_one():
    order_details._read.clear()
    for _ in range(2):  # the second time from memory
        for line in LINES:
            for strength, combination in ((30.0, True), (None, False)):
                assert order_details._read_line(
                    line, strength, combination
                ) == order_details._dosage_line(line, strength, combination)


def test_the_same_words_in_another_order_of_keys_are_one_line_and_other_words_another():
    order_details._read.clear()
    a = {"text": "1 tablet every 6 hours", "patientInstruction": "with food"}
    b = {"patientInstruction": "with food", "text": "1 tablet every 6 hours"}
    order_details._read_line(a, 30.0, True)
    order_details._read_line(b, 30.0, True)
    assert len(order_details._read) == 1
    order_details._read_line({"text": "2 tablets every 6 hours"}, 30.0, True)
    assert len(order_details._read) == 2


def test_a_long_line_or_a_huge_number_is_read_each_time_not_kept():
    order_details._read.clear()
    long_line = {"text": "1 tablet " + "x" * order_details._READ_KEY_LIMIT}
    huge = {"doseAndRate": [{"doseQuantity": {"value": 2**70, "unit": "tablet"}}]}
    for line in (long_line, huge):
        assert order_details._read_line(line, 30.0, True) == order_details._dosage_line(
            line, 30.0, True
        )
    assert order_details._read == {}
