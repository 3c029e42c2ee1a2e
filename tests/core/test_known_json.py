"""A large value a client sends again and again, recognised by its bytes (``known_json``): a
body read that way must be what ``parse_json`` reads, the same value or the same error, the
value at ``prefetch.genomicResults`` left as its bytes only when they are exactly the value
there."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_request import json_values, same

from cds_service.core import known_json
from cds_service.core.errors import ClientError
from cds_service.core.json_limits import parse_json
from cds_service.core.known_json import SMALLEST, KnownValues, Unread

WHERE = ("prefetch", "genomicResults")


def results(tag: str = "a", size: int = SMALLEST + 500) -> dict[str, Any]:
    """A Bundle of about ``size`` bytes of JSON, told apart by ``tag`` (in its first bytes)."""
    entries = []
    while len(json.dumps(entries)) < size:
        n = len(entries)
        entries.append({"resource": {"resourceType": "Observation", "id": f"{tag}-{n}"}})
    return {"resourceType": "Bundle", "id": tag, "type": "searchset", "entry": entries}


def body(value: Any = None, **top: Any) -> dict[str, Any]:
    prefetch = {"genomicResults": results() if value is None else value, "patient": None}
    return {"hook": "order-select", "context": {"patientId": "p1"}, "prefetch": prefetch, **top}


def encoded(value: Any, **dumps: Any) -> bytes:
    return json.dumps(value, **dumps).encode()


def taught(*raws: bytes) -> KnownValues:
    """Values that have read each of ``raws`` twice (their genomic results are then known)."""
    known = KnownValues(WHERE)
    for raw in raws:
        known.read(raw)
        known.read(raw)
    return known


def unread(parsed: Any) -> Any:
    """``parsed`` with each ``Unread`` read: what ``parse_json`` gives for the same body."""
    if isinstance(parsed, Unread):
        return parsed.value()
    if isinstance(parsed, dict):
        return {k: unread(v) for k, v in parsed.items()}
    if isinstance(parsed, list):
        return [unread(v) for v in parsed]
    return parsed


def kept(parsed: Any) -> bool:
    return isinstance(parsed["prefetch"]["genomicResults"], Unread)


def read_or_error(read: Any, raw: bytes) -> Any:
    try:
        return unread(read(raw))
    except ClientError as exc:
        return ("error", exc.message, exc.details)


def test_results_sent_a_third_time_are_left_as_their_bytes_and_read_the_same():
    raw = encoded(body())
    known = KnownValues(WHERE)
    assert not kept(known.read(raw))  # seen once
    assert not kept(known.read(raw))  # twice: its bytes are now known
    third = known.read(raw)
    assert kept(third)
    assert third["prefetch"]["genomicResults"].raw == encoded(results())
    assert same(unread(third), parse_json(raw))
    assert known.values == 1


def test_the_same_results_in_another_body_are_recognised():
    """The next order-select: other draft orders, a new hookInstance, the same results."""
    known = taught(encoded(body()))
    other = body(hookInstance="another", context={"patientId": "p1", "draftOrders": [1, 2]})
    parsed = known.read(encoded(other))
    assert kept(parsed)
    assert same(unread(parsed), other)


def test_changed_results_are_read_in_full():
    known = taught(encoded(body()))
    changed = results()
    changed["entry"][-1]["resource"]["id"] = "changed"  # (the same first bytes)
    parsed = known.read(encoded(body(changed)))
    assert not kept(parsed)
    assert parsed["prefetch"]["genomicResults"] == changed


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(
            lambda g: f'{{"prefetch": {{"genomicResults": {g}}}, "prefetch": {{}}}}',
            id="prefetch twice, the later without results",
        ),
        pytest.param(
            lambda g: f'{{"prefetch": {{"genomicResults": {g}, "genomicResults": 1}}}}',
            id="the key twice, the later another value",
        ),
        pytest.param(
            lambda g: f'{{"prefetch": {{"genomicResults": {g}, "genomicResults": null}}}}',
            id="the key twice, the later null",
        ),
        pytest.param(
            lambda g: f'{{"context": {{"genomicResults": {g}}}, "prefetch": {{}}}}',
            id="the key elsewhere only",
        ),
        pytest.param(
            lambda g: f'{{"context": {{"x": {g}}}, "prefetch": {{"genomicResults": 2}}}}',
            id="the bytes elsewhere, other results at the place",
        ),
        pytest.param(
            lambda g: f'{{"prefetch": {{"genomicResults": [{g}]}}}}',
            id="the bytes inside the value",
        ),
        pytest.param(
            lambda g: f'{{"prefetch": {{"genomicResults": {g}}}}} trailing',
            id="not JSON after them",
        ),
        pytest.param(lambda g: f'{{"prefetch": {{"genomicResults": {g}}}', id="the body cut short"),
        pytest.param(
            lambda g: f'{{"prefetch": {{"genomicResults": {g}}}, "n": NaN}}', id="NaN after them"
        ),
        pytest.param(
            lambda g: f'{{"prefetch": {{"genomicResults": {g}}}, "n": {"9" * 30}}}',
            id="a long integer after them",
        ),
        pytest.param(
            lambda g: f'{{"prefetch": {{"genomicResults": {g}}}, "s": "\\udc00"}}',
            id="a lone surrogate after them",
        ),
        pytest.param(
            lambda g: f'{{"prefetch": {{"genomicResults": {g}}}, "s": "{"x" * 70000}"}}',
            id="a string too long after them",
        ),
        pytest.param(
            lambda g: (
                '{"note": "\\"genomicResults\\": {}", "prefetch": {"genomicResults": ' + g + "}}"
            ),
            id="the key's text inside a string first",
        ),
        pytest.param(
            lambda g: f'{{"é": "ü", "prefetch": {{"genomicResults" :\n {g}}}}}',
            id="non-ASCII before them, white space around the colon",
        ),
        pytest.param(
            lambda g: '{"prefetch": {"genomicResults"' + " " * 70_000 + ": " + g + "}}",
            id="much white space before the colon",
        ),
        pytest.param(
            lambda g: f'[{{"prefetch": {{"genomicResults": {g}}}}}]', id="the body an array"
        ),
    ],
)
def test_a_body_holding_known_results_reads_as_parse_json_reads_it(shape):
    """Whatever surrounds the known bytes, the answer (or the error, with its wording and
    field) is the one a full reading gives; they are left unread only where they are the
    value at ``prefetch.genomicResults``."""
    g = json.dumps(results())
    known = taught(encoded(body()))
    assert known.values == 1
    raw = shape(g).encode()
    assert read_or_error(known.read, raw) == read_or_error(parse_json, raw)


@pytest.mark.parametrize("dumps", [{"indent": 2}, {"ensure_ascii": False}, {}])
def test_results_are_found_in_any_layout(dumps):
    """Indented, with characters of several bytes before them, compact: the bytes of the
    results are found where they start (a character is not a byte)."""
    value = {"note": "Schmerz – ü", **body()}
    raw = encoded(value, **dumps)
    known = taught(raw)
    parsed = known.read(raw)
    assert kept(parsed)
    assert same(unread(parsed), parse_json(raw))


@settings(max_examples=150, deadline=None)
@given(
    before=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    after=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    pretty=st.booleans(),
)
def test_any_surroundings_read_as_parse_json_reads_them(before, after, pretty):
    """Random keys and values before and after the known results (duplicates of the
    ``prefetch`` key included), compact or indented, ASCII or not."""
    dumps: dict[str, Any] = {"indent": 1} if pretty else {"ensure_ascii": False}
    known = taught(encoded(body(), **dumps))
    whole = {**before, "prefetch": {"genomicResults": results()}, **after}
    raw = encoded(whole, **dumps)
    assert read_or_error(known.read, raw) == read_or_error(parse_json, raw)


def test_only_an_object_of_some_size_is_kept():
    small = body(results(size=100))
    listed = body([results()])
    known = taught(encoded(small), encoded(listed))
    assert known.values == 0
    assert not kept(known.read(encoded(small)))
    assert not isinstance(known.read(encoded(listed))["prefetch"]["genomicResults"], Unread)


def test_a_value_too_large_to_keep_is_not_scanned_again(monkeypatch):
    monkeypatch.setattr(known_json, "LARGEST", SMALLEST + 100)
    scanned = []
    scan = known_json._value_bytes
    monkeypatch.setattr(known_json, "_value_bytes", lambda *a: scanned.append(1) or scan(*a))
    raw = encoded(body())
    known = KnownValues(WHERE)
    for _ in range(5):
        assert not kept(known.read(raw))
    assert len(scanned) == 1
    assert known.values == 0


def test_what_is_kept_is_bounded(monkeypatch):
    monkeypatch.setattr(known_json, "MAX_VALUES", 3)
    raws = [encoded(body(results(f"tag{n}"))) for n in range(6)]
    known = taught(*raws)
    assert known.values == 3
    assert kept(known.read(raws[-1])) and not kept(known.read(raws[0]))  # (the oldest went)
    monkeypatch.setattr(known_json, "MAX_BYTES", 2 * len(raws[0]))
    known = taught(*raws)
    assert known.values <= 2 and known.bytes <= 2 * len(raws[0])


def test_versions_with_the_same_first_bytes_are_kept_side_by_side(monkeypatch):
    """The same patient's results as they change (more entries at the end)."""
    versions = []
    for n in range(known_json.PER_FINGERPRINT + 1):
        value = results()
        value["entry"].append({"version": n})
        versions.append(encoded(body(value)))
    known = taught(*versions)
    assert known.values == known_json.PER_FINGERPRINT
    assert [kept(known.read(raw)) for raw in versions] == [False] + [True] * (len(versions) - 1)


def test_an_unread_value_never_shows_its_content():
    value = Unread(b'{"subject": "Patient/secret"}')
    assert "secret" not in repr(value) and "secret" not in str(value)


def test_threads_reading_at_once_each_get_the_right_body():
    raws = [encoded(body(results(f"t{n}"), n=n)) for n in range(8)]
    known = KnownValues(WHERE)
    wrong: list[int] = []

    def reader(n: int) -> None:
        for _ in range(40):
            parsed = known.read(raws[n])
            if unread(parsed) != parse_json(raws[n]):
                wrong.append(n)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    assert known.values == 8


def _deep(levels: int) -> str:
    """An array nested ``levels`` deep, as JSON text (too deep for ``json.dumps`` here)."""
    return "[" * levels + "]" * levels


def _raw(extra: str = "", results_extra: str = "") -> bytes:
    """A body whose results carry ``results_extra`` (JSON members) and whose context carries
    ``extra``."""
    value = json.dumps(results())[:-1] + results_extra + "}"
    context = '{"patientId": "p1"' + extra + "}"
    return (
        f'{{"hook": "h", "context": {context}, "prefetch": {{"genomicResults": {value}}}}}'.encode()
    )


_DEEP = ', "x": ' + _deep(990)
_NUMBER = ', "n": 1234567890123456789'


@pytest.mark.parametrize(
    ("teach", "attack", "kept_values"),
    [
        pytest.param(
            _raw(results_extra=_DEEP),
            _raw(_NUMBER, results_extra=_DEEP),
            1,
            id="deep results known, a 19-digit number elsewhere (the standard library's depth)",
        ),
        pytest.param(
            _raw(results_extra=_DEEP),
            b"\xef\xbb\xbf" + _raw(results_extra=_DEEP),
            1,
            id="a byte-order mark",
        ),
        pytest.param(
            _raw(results_extra=_NUMBER),
            _raw(', "d": ' + _deep(990), results_extra=_NUMBER),
            0,
            id="a 19-digit number in the results, deep nesting elsewhere",
        ),
        pytest.param(
            _raw(results_extra=', "e": "\\ud83d\\ude00"'),
            _raw(results_extra=', "e": "\\ud83d\\ude00"').replace(b'"p1"', b'"p\xed\xa0\x80"'),
            1,
            id="a lone surrogate as UTF-8 bytes elsewhere",
        ),
    ],
)
def test_a_body_the_standard_library_reads_is_read_in_full(teach, attack, kept_values):
    """Found in review: ``parse_json`` reads a body orjson does not read (a 19-digit number,
    a byte-order mark, invalid UTF-8) with the standard library, whose depth limit is lower;
    with known results, only the rest was. Such a body is now read in full, as before."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # (so that the deep results are kept, wherever this runs)
    try:
        known = taught(teach)
    finally:
        sys.setrecursionlimit(limit)
    assert known.values == kept_values  # (results the standard library read are not kept)
    assert read_or_error(known.read, attack) == read_or_error(parse_json, attack)
    assert read_or_error(parse_json, attack)[0] == "error"


def test_results_read_by_the_standard_library_are_never_kept():
    known = taught(_raw(results_extra=_NUMBER))
    assert known.values == 0
    assert known.read(_raw(results_extra=_NUMBER)) == parse_json(_raw(results_extra=_NUMBER))


def test_the_stand_in_holds_no_digit():
    """A stand-in is never part of a long number (which would send every body to the slow
    parser)."""
    stand_ins = {KnownValues(WHERE)._stand_in for _ in range(200)}
    assert len(stand_ins) == 200
    assert not any(any(c in b"0123456789" for c in s) for s in stand_ins)
