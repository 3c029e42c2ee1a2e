"""Reading a request body: the fast parser (orjson) must read every body exactly as the
standard library does, or leave it to the standard library (request.py, ``parse_json``)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.core.errors import ClientError
from cds_service.core.json_limits import has_long_digit_run, loads_finite_json, parse_json


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0; NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.text(max_size=10), json_values, min_size=1, max_size=5))
def test_every_body_reads_as_the_standard_library_reads_it(value: dict[str, Any]) -> None:
    for raw in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        encoded = raw.encode()
        assert same(parse_json(encoded), json.loads(encoded))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": 18446744073709551615}',  # 2**64 - 1: still an int, not a float
        b'{"n": 18446744073709551616}',  # 2**64
        b'{"n": -9223372036854775809}',  # below -2**63
        b'{"n": 123456789012345678901234567890}',
        b'{"n": 0.1234567890123456789012}',
        b'{"a": 1, "a": 2}',  # the last one wins, as before
        b'\xef\xbb\xbf{"bom": true}',  # UTF-8 with a byte-order mark
        '{"utf16": "é"}'.encode("utf-16"),
        b'{"pair": "\\ud83d\\ude00"}',
    ],
)
def test_bodies_the_fast_parser_reads_differently_are_read_as_before(raw: bytes) -> None:
    assert same(parse_json(raw), json.loads(raw))


@settings(max_examples=500, deadline=None)
@given(
    before=st.binary(max_size=40),
    run=st.integers(min_value=1, max_value=40),
    after=st.binary(max_size=40),
    digits=st.data(),
)
def test_a_run_of_digits_is_found_at_any_offset_exactly_when_it_is_19_long(
    before: bytes, run: int, after: bytes, digits: st.DataObject
) -> None:
    """The check that sends long numbers to the exact parser looks at every fourth byte
    first; a run of 19 digits must be found wherever it starts, and a shorter one must not
    count (the bytes around it are not digits)."""
    text = digits.draw(st.text(alphabet="0123456789", min_size=run, max_size=run))
    fence = b"x"
    raw = before.translate(_NO_DIGITS) + fence + text.encode() + fence + after.translate(_NO_DIGITS)
    assert has_long_digit_run(raw) is (run >= 19)


_NO_DIGITS = bytes.maketrans(b"0123456789", b"abcdefghij")


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.sampled_from([b"0", b"7", b"9", b"-", b"x", b"12345", b"2026-12-07"]), max_size=120)
)
def test_the_digit_check_agrees_with_a_plain_search_on_digit_heavy_bodies(
    parts: list[bytes],
) -> None:
    """Bodies full of digits four apart (dates, codes) make the check look at many places,
    then at every byte: its answer is a plain search's, whatever the body."""
    raw = b"".join(parts)
    assert has_long_digit_run(raw) is (re.search(rb"[0-9]{19}", raw) is not None)


@pytest.mark.parametrize("near_misses", [0, 7, 8, 9, 50])
@pytest.mark.parametrize("run", [18, 19])
def test_a_long_number_behind_many_near_misses_is_found(near_misses: int, run: int) -> None:
    """Digits standing four apart (``1xxx1xxx1xxx1xxx``) look like a run in the sample;
    past a few of them the whole body is searched, and a real run behind them still counts."""
    raw = b"1xxx" * (4 * near_misses) + b'{"n": ' + b"7" * run + b"}"
    assert has_long_digit_run(raw) is (run >= 19)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": 1} trailing', "not valid JSON"),
        (b'{"a": "\xff"}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_bodies_no_parser_reads_keep_their_message(raw: bytes, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        parse_json(raw)


@pytest.mark.parametrize(
    "raw", [b'{"n": 1e400}', b'{"n": NaN}', b'{"m": -Infinity}', b'{"n": 12345678901234567890e999}']
)
def test_numbers_that_are_not_finite_are_refused(raw: bytes) -> None:
    """JSON numbers are finite (RFC 8259): the standard library would read NaN and infinity,
    and an answer that echoed one (a draft order's field copied into a suggestion) would not
    be JSON."""
    with pytest.raises(ClientError, match="NaN, Infinity or a number too large"):
        parse_json(raw)


def test_an_upper_case_scheme_in_fhir_server_is_read_as_lower_case() -> None:
    from cds_service.core.hook_request import HookRequest

    request = HookRequest.model_validate(
        {
            "hook": "order-select",
            "hookInstance": "x",
            "fhirServer": "HTTPS://ehr.example.org/fhir",
            "context": {},
        }
    )
    assert request.fhirServer == "https://ehr.example.org/fhir"


# -- what the EHR's FHIR server answers: the same value, or the same error, as json.loads ------


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_a_fhir_answer_reads_as_json_loads_reads_it(value: Any) -> None:
    for raw in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert same(loads_finite_json(raw.encode()), json.loads(raw.encode()))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": 18446744073709551616}',
        b'{"n": 123456789012345678901234567890}',
        b'{"a": 1, "a": 2}',
        '{"utf16": "é"}'.encode("utf-16"),
        b'{"lone": "\\ud800"}',
        b'\xef\xbb\xbf{"bom": true}',  # UTF-8 with a byte-order mark
    ],
)
def test_a_fhir_answer_only_json_loads_reads_is_read_as_it_reads_it(raw: bytes) -> None:
    assert same(loads_finite_json(raw), json.loads(raw))


@pytest.mark.parametrize("raw", [b'{"a": 1} trailing', b'{"a": "\xff"}', b"", b"nul"])
def test_a_fhir_answer_json_loads_refuses_is_refused_alike(raw: bytes) -> None:
    with pytest.raises(ValueError) as ours:
        loads_finite_json(raw)
    with pytest.raises(ValueError) as theirs:
        json.loads(raw)
    assert type(ours.value) is type(theirs.value)


@pytest.mark.parametrize(
    "raw", [b'{"n": NaN}', b'{"n": -Infinity}', b'{"n": Infinity}', b'{"n": 1e400}']
)
def test_a_fhir_answer_with_a_number_json_has_not_is_refused(raw: bytes) -> None:
    """json.loads reads these; orjson's JSON (the caches' keys) would write each as null."""
    with pytest.raises(ValueError):
        loads_finite_json(raw)


def test_a_fhir_answer_nested_too_deeply_fails_as_json_loads_fails() -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RecursionError):
        loads_finite_json(raw)


def test_a_lone_surrogate_sent_as_utf8_bytes_is_refused_naming_its_field():
    """Invalid UTF-8 (a surrogate's three bytes) goes to the standard library's parser, which
    reads it as a lone surrogate ("surrogatepass"): refused there too, not a 500 later."""
    with pytest.raises(ClientError) as caught:
        parse_json(b'{"context": {"patientId": "p\xed\xa0\x80"}}')
    assert caught.value.details == [
        {
            "field": "context.patientId",
            "problem": "contains an unpaired UTF-16 surrogate (not valid Unicode)",
        }
    ]
