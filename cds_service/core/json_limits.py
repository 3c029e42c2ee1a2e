"""JSON as the service reads it: request bodies and FHIR answers, with the same limits.

A value no part of the service should see is refused: an integer too long to convert, a lone
UTF-16 surrogate, a string over ``MAX_STRING``, NaN or Infinity (not JSON). In a request body
each is a 400 naming the field; in a FHIR answer, the answer is unreadable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from .errors import ClientError

# Bounds on what one request may hold. Longer values are refused (400 naming the field), not
# truncated: a cut value could change meaning. No FHIR element a CDS service reads comes near.
MAX_STRING = 65_536  # characters in any one JSON string
MAX_INT_DIGITS = 4_300  # digits in a JSON integer literal: Python's own conversion limit
# A JSON escape of a UTF-16 surrogate: only then can a parsed string hold a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _HugeInt(str):
    """Stands in for an integer literal too long to convert, so its field can be named."""


def parse_json(raw: bytes) -> Any:
    """The JSON body; a 400 naming the field for values no part of the service should see:
    integers too long to convert, lone UTF-16 surrogates, strings over ``MAX_STRING``."""
    return read_json(raw)[0]


def read_json(raw: bytes) -> tuple[Any, bool]:
    """``parse_json``'s answer, and whether orjson read the body (the usual body: valid
    UTF-8, no 19-digit number, not nested past orjson's limit); else the standard library's
    parser did, the same way (``_fast_loads``)."""
    if not raw.strip():
        raise ClientError("the request body is empty; expected a JSON object")
    try:
        return parse_json_fast(raw), True
    except NotFast:
        body = _loads(raw)
    # The standard library decodes bytes with "surrogatepass": a lone surrogate written as
    # UTF-8 bytes (invalid UTF-8, which orjson refuses) reads as one. Looked for here.
    _check_strings(raw, body, unicode=True)
    return body, False


def parse_json_fast(raw: bytes) -> Any:
    """``parse_json`` for a body orjson reads; ``NotFast`` for any other (``parse_json``
    then reads it, with its answer or its error)."""
    body = _fast_loads(raw)
    # (pairs are fine: checked below.) Most bodies hold no backslash at all, found at memchr
    # speed; a search for the two bytes ``\\u`` takes 40 times as long (25 µs on 26 KB).
    _check_strings(raw, body, b"\\" in raw and _SURROGATE_ESCAPE.search(raw) is not None)
    return body


def _check_strings(raw: bytes, body: Any, unicode: bool) -> None:
    """A 400 naming the field for a string over ``MAX_STRING`` or (if ``unicode``) with a
    lone surrogate. The walks are skipped for the common small, clean body."""
    if (unicode or len(raw) > MAX_STRING) and not _strings_acceptable(body, unicode):
        for path, value in _walk(body):  # slower, names the field
            _check_value(path, value)


class NotFast(Exception):
    """The body needs the standard library's parser (it reads it exactly, or says why not)."""


# Every digit as "9": then 19 nines in a row are 19 digits in a row, perhaps an integer beyond
# 64 bits, which orjson would read as a float (ten times faster than a regular expression).
_DIGITS_AS_NINES = bytes.maketrans(b"0123456789", b"9" * 10)
_LONG_NUMBER = b"9" * 19


def has_long_digit_run(raw: bytes) -> bool:
    """Are there 19 digits in a row somewhere in ``raw``? Every fourth byte is looked at
    first: 19 positions in a row hold at least four multiples of 4, so such a run shows as
    four digits in a row there, the first of them at most 3 bytes into the run. Only the
    bytes around each such place are then looked at (dates and identifiers put digits four
    apart now and then), and every byte only when there are many."""
    sample = raw[::4].translate(_DIGITS_AS_NINES)
    at = sample.find(b"9999")
    for _ in range(_PLACES_LOOKED_AT):
        if at < 0:
            return False
        start = max(0, 4 * at - 3)
        if _LONG_NUMBER in raw[start : 4 * at + 19].translate(_DIGITS_AS_NINES):
            return True
        at = sample.find(b"9999", at + 1)
    return at >= 0 and _LONG_NUMBER in raw.translate(_DIGITS_AS_NINES)


#: Places where the sample shows four digits in a row looked at one by one, before the
#: whole body is.
_PLACES_LOOKED_AT = 8


def _fast_loads(raw: bytes) -> Any:
    """orjson (about twice as fast on a typical body) where it reads exactly what ``json``
    reads; anything else (invalid JSON, NaN, lone surrogates, very long numbers, deep
    nesting) goes to ``_loads`` for the same result and the same error messages as before."""
    if has_long_digit_run(raw):
        raise NotFast
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise NotFast from None


def loads_finite_json(raw: bytes) -> Any:
    """What ``json.loads(raw)`` reads, or the same exception, read by orjson where it reads
    exactly that (``_fast_loads``); except NaN, Infinity and numbers beyond a double, refused
    with a ``ValueError`` as in request bodies. They are not JSON, and the results' caches
    (``genomic_facts``) key by orjson's JSON, which writes each of them as null: an
    Observation holding NaN would share its entry with the same one holding null. For what the
    EHR's FHIR server answers."""
    try:
        return _fast_loads(raw)
    except NotFast:
        return json.loads(raw, parse_float=_finite, parse_constant=_no_constant)


class _NotFinite(ValueError):
    """NaN, Infinity, or a number beyond a double: no JSON value (RFC 8259), and an answer
    that echoed one would not be JSON either."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite
    return value


def _no_constant(text: str) -> Any:
    raise _NotFinite


_NOT_FINITE = "the request body holds NaN, Infinity or a number too large: JSON numbers are finite"


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except _NotFinite:
        raise ClientError(_NOT_FINITE) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClientError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ClientError("the request body is nested too deeply") from None
    except ValueError:  # an integer literal past Python's limit: parse again to name it
        return _parse_naming_huge_ints(raw)


def _parse_naming_huge_ints(raw: bytes) -> Any:
    def parse_int(text: str) -> int | _HugeInt:
        if len(text) - (text[0] == "-") > MAX_INT_DIGITS:
            return _HugeInt(text)
        return int(text)

    try:
        body = json.loads(
            raw, parse_int=parse_int, parse_float=_finite, parse_constant=_no_constant
        )
    except _NotFinite:
        raise ClientError(_NOT_FINITE) from None
    except RecursionError:
        raise ClientError("the request body is nested too deeply") from None
    except ValueError:
        raise ClientError("the request body holds a number that cannot be read") from None
    for path, value in _walk(body):
        _check_value(path, value)
    return body


def _strings_acceptable(body: Any, unicode: bool) -> bool:
    """Fast pass (no paths built): no string or key longer than MAX_STRING, and (if
    ``unicode``) none with a lone surrogate. Big bodies pass here: kept tight."""
    limit = MAX_STRING
    stack = [body]
    strings: list[str] = []
    values: Iterable[Any]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            strings.extend(node)  # the keys
            values = node.values()
        elif type(node) is list:
            values = node
        else:
            continue
        for item in values:
            kind = type(item)
            if kind is str:
                if len(item) > limit:
                    return False
                if unicode:
                    strings.append(item)
            elif kind is dict or kind is list:
                stack.append(item)
    if any(len(key) > limit for key in strings):
        return False
    if unicode:
        try:
            for text in strings:
                text.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _check_value(path: str, value: Any) -> None:
    if isinstance(value, _HugeInt):
        _reject(path, f"an integer of more than {MAX_INT_DIGITS} digits")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            _reject(path, f"longer than {MAX_STRING} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            _reject(path, "contains an unpaired UTF-16 surrogate (not valid Unicode)")


def _reject(path: str, problem: str) -> None:
    raise ClientError(
        "the request body holds a value this service does not accept",
        details=[{"field": path or "(body)", "problem": problem}],
    )


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every value (and object key) of a parsed JSON document with its dotted path.

    Iterative: a deeply nested body cannot exhaust the stack here.
    """
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        yield where, node
        if isinstance(node, dict):
            for key, item in node.items():
                child = f"{where}.{key}" if where else str(key)
                yield _field(child), key
                stack.append((_field(child), item))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(node))


def _field(path: str) -> str:
    """A path fit to echo in an answer (a field name may itself be hostile)."""
    printable = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return printable if len(printable) <= 200 else printable[:200] + "…"
