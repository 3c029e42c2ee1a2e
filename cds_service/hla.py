"""HLA results: is a risk allele (a marker such as ``HLA-B*15:02``) present or absent?

Reads a GL string (``HLA-B*15:02:01+HLA-B*07:02:01``), an allele list at any resolution of
two fields or more (``B*15:02, B*07:02``; old style ``B*1502``) and presence/absence answers.
Anything ambiguous (a GL ``/`` or ``|`` alternative that differs on the marker, a one-field
allele in the marker's allele group) is ``None``: no alert rather than a wrong one.
"""

from __future__ import annotations

import re

POSITIVE = "positive"
NEGATIVE = "negative"

_ALLELE = re.compile(r"(?:HLA-)?([A-Z][A-Z0-9]{0,3})\*(\d{2,4}(?::\d{2,3}){0,3})[A-Z]?")

#: LOINC answers for presence results.
PRESENT_CODES = {"LA9633-4": POSITIVE, "LA9634-2": NEGATIVE}
_NEGATIVE_TEXT = re.compile(r"\b(absent|negative|not detected|not present|non-?carrier)\b", re.I)
_POSITIVE_TEXT = re.compile(r"\b(present|positive|detected|carrier)\b", re.I)


def split_marker(marker: str) -> tuple[str, tuple[str, str]]:
    """'HLA-B*15:02' -> ('HLA-B', ('15', '02'))."""
    gene, _, allele = marker.partition("*")
    fields = allele.split(":")
    return gene, (fields[0], fields[1])


def _fields(raw: str) -> tuple[str, ...]:
    if ":" not in raw and len(raw) == 4:  # pre-2010 names: B*1502 == B*15:02
        return raw[:2], raw[2:]
    return tuple(raw.split(":"))


def _allele_status(token: str, locus: str, marker: tuple[str, str]) -> str | None:
    """One allele name vs the marker: positive, negative, None when it cannot tell."""
    m = _ALLELE.fullmatch(token.strip())
    if not m or m.group(1) != locus:
        return "other-locus"
    fields = _fields(m.group(2))
    if fields[0] != marker[0]:
        return NEGATIVE
    if len(fields) < 2:
        return None  # one field (allele group) only: could be the marker or not
    return POSITIVE if fields[1] == marker[1] else NEGATIVE


def marker_status(value: str, marker: str) -> tuple[str | None, str]:
    """Status of ``marker`` in a typed HLA value, and a reason when it is unclear."""
    gene, fields = split_marker(marker)
    locus = gene.removeprefix("HLA-")
    statuses = set()
    found = False
    for option in value.split("|"):
        option_status = NEGATIVE
        for copy in re.split(r"[+,;\s]+", option):
            if not copy.strip():
                continue
            alternatives = {_allele_status(a, locus, fields) for a in copy.split("/")}
            alternatives.discard("other-locus")
            if not alternatives:
                continue
            found = True
            if alternatives == {POSITIVE}:
                option_status = POSITIVE
            elif alternatives != {NEGATIVE} and option_status != POSITIVE:
                option_status = "unclear"
        statuses.add(option_status)
    if not found:
        return None, f"no {gene} allele in '{value}'"
    if statuses == {POSITIVE}:
        return POSITIVE, ""
    if statuses == {NEGATIVE}:
        return NEGATIVE, ""
    return None, f"'{value}' is ambiguous about {marker}"


def presence_from_text(text: str) -> str | None:
    if _NEGATIVE_TEXT.search(text):
        return NEGATIVE
    if _POSITIVE_TEXT.search(text):
        return POSITIVE
    return None


def markers_named(text: str, markers: frozenset[str]) -> set[str]:
    """The known markers a result's name mentions ('HLA-B*15:02 [Presence]', 'HLA-B*1502')."""
    found = set()
    for m in _ALLELE.finditer(text):
        fields = _fields(m.group(2))
        if len(fields) >= 2:
            name = f"HLA-{m.group(1)}*{fields[0]}:{fields[1]}"
            if name in markers:
                found.add(name)
    return found
