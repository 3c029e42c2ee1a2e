"""The HLA grammar: is a risk allele (a marker such as ``HLA-B*15:02``) present or absent?

Reads GL strings (Milius et al. 2013, glstring.org) as the HL7 Genomics Reporting IG codes
them, with or without the ``namespace#version#`` prefix of a versioned GL string
(``hla#3.31.0#HLA-A*03:01:01:01+HLA-A*30:01:01``), allele lists as labs write them in text
(``B*15:02, B*07:02``; pre-2010 names such as ``B*1502``) and presence/absence answers.

GL string operators, from the loosest to the tightest binding:

====  ==========================================================================
``^``  separates loci (genes)
``|``  genotype ambiguity: one of these genotypes
``+``  the two (or more) copies of a gene
``~``  alleles in phase on one haplotype (across loci)
``/``  allele ambiguity: one of these alleles
====  ==========================================================================

The marker is present when every possible genotype carries it on some copy, absent when no
possible genotype does, and unknown otherwise. Anything the grammar cannot read for the
marker's locus (a one-field allele in the marker's group, an NMDP code such as ``B*15:XX``,
a null allele, a token naming the locus that is no allele name) makes the answer unknown:
no alert rather than a wrong one.
"""

from __future__ import annotations

import re

POSITIVE = "positive"
NEGATIVE = "negative"
_UNCLEAR = "unclear"

#: An allele name at two fields or more (a G or P group counts as its named allele).
_ALLELE = re.compile(
    r"(?:HLA-)?(?P<locus>[A-Z][A-Z0-9]{0,3})\*(?P<fields>\d{2,4}(?::\d{2,3}){0,3})"
    r"(?P<suffix>[A-Z]?)"
)
#: Something that names a locus but may not be a readable allele ('HLA-B*15:XX', 'B*15').
_LOCUS_TOKEN = re.compile(r"(?:HLA-)?(?P<locus>[A-Z][A-Z0-9]{0,3})(?:\*|:)")
#: The prefix of a versioned GL string code: 'hla#3.31.0#'.
_GL_PREFIX = re.compile(r"^#?[A-Za-z][A-Za-z0-9_-]*#[^#]*#")
#: The GL operators (``_OPERATORS`` splits on them, keeping them).
_OPERATORS = re.compile(r"([\^|+~/])")
#: The longest typed HLA value read (a GL string with much allele ambiguity runs to a few
#: kilobytes); a longer one is unreadable: the marker's status is unknown.
MAX_TEXT = 16_384
#: Expression suffixes of alleles that are not expressed or whose expression is doubtful.
_NOT_EXPRESSED = frozenset({"N", "Q", "A", "C"})

#: LOINC answers for presence results: Present/Absent, Positive/Negative, Detected/Not detected.
PRESENT_CODES = {
    "LA9633-4": POSITIVE,
    "LA9634-2": NEGATIVE,
    "LA6576-8": POSITIVE,
    "LA6577-6": NEGATIVE,
    "LA11882-0": POSITIVE,
    "LA11883-8": NEGATIVE,
}
_NEGATIVE_TEXT = re.compile(r"\b(absent|negative|not detected|not present|non-?carrier)\b", re.I)
_PROSE_NEGATION = re.compile(r"\b(not|no|negative|absent|without|excluded)\b", re.I)
_POSITIVE_TEXT = re.compile(r"\b(present|positive|detected|carrier)\b", re.I)


def split_marker(marker: str) -> tuple[str, tuple[str, str]]:
    """'HLA-B*15:02' -> ('HLA-B', ('15', '02'))."""
    gene, _, allele = marker.partition("*")
    fields = allele.split(":")
    return gene, (fields[0], fields[1])


def strip_gl_prefix(value: str) -> str:
    """'hla#3.31.0#HLA-A*03:01+HLA-A*30:01' -> 'HLA-A*03:01+HLA-A*30:01'."""
    return _GL_PREFIX.sub("", value.strip())


def _fields(raw: str) -> tuple[str, ...]:
    if ":" not in raw and len(raw) == 4:  # pre-2010 names: B*1502 == B*15:02
        return raw[:2], raw[2:]
    return tuple(raw.split(":"))


def _allele_status(token: str, locus: str, marker: tuple[str, str]) -> str | None:
    """One allele name against the marker: positive, negative, unclear, or None when the
    token is about another locus (or is not about HLA at all)."""
    token = token.strip()
    m = _ALLELE.fullmatch(token)
    if m is None:
        named = _LOCUS_TOKEN.match(token)
        return _UNCLEAR if named and named.group("locus") == locus else None
    if m.group("locus") != locus:
        return None
    fields = _fields(m.group("fields"))
    if fields[0] != marker[0]:
        return NEGATIVE
    if len(fields) < 2:
        return _UNCLEAR  # one field (allele group) only: could be the marker or not
    if fields[1] != marker[1]:
        return NEGATIVE
    return _UNCLEAR if m.group("suffix") in _NOT_EXPRESSED else POSITIVE


def _copy_status(copy: str, locus: str, marker: tuple[str, str]) -> str | None:
    """One gene copy (a haplotype, possibly ``~``-phased across loci, each an allele list)."""
    found = None
    for allele_list in copy.split("~"):
        statuses = {_allele_status(a, locus, marker) for a in allele_list.split("/")}
        statuses.discard(None)
        if not statuses:
            continue
        status = statuses.pop() if len(statuses) == 1 else _UNCLEAR
        if found is None or status == POSITIVE or (status == _UNCLEAR and found == NEGATIVE):
            found = status
    return found


def _genotype_status(genotype: str, locus: str, marker: tuple[str, str]) -> str | None:
    copies = [_copy_status(c, locus, marker) for c in genotype.split("+")]
    copies_found = [c for c in copies if c is not None]
    if not copies_found:
        return None
    if POSITIVE in copies_found:
        return POSITIVE
    return _UNCLEAR if _UNCLEAR in copies_found else NEGATIVE


def marker_status(value: str, marker: str) -> tuple[str | None, str]:
    """Status of ``marker`` in a typed HLA value, and a reason when it is unclear."""
    gene, fields = split_marker(marker)
    locus = gene.removeprefix("HLA-")
    if len(value) > MAX_TEXT:
        return None, f"the value is longer than {MAX_TEXT} characters: not read"
    text = strip_gl_prefix(value)
    if "#" in text:
        return None, f"'{value}' is not a GL string the service can read"
    if _PROSE_NEGATION.search(text):
        return None, f"'{value}' is prose with a negation, not an allele list"
    # Text that is no GL string ('B*15:02, B*07:02'): commas, semicolons and spaces part
    # the copies, as '+' does (after spaces around GL operators are dropped).
    text = _without_spaces_around_operators(text.strip())
    text = re.sub(r"\s*[,;]\s*|\s+(?:and\s+)?", "+", text)
    statuses: set[str] = set()
    for block in text.split("^"):
        options = [_genotype_status(g, locus, fields) for g in block.split("|")]
        found = [o for o in options if o is not None]
        if not found:
            continue
        if len(found) != len(options):
            statuses.add(_UNCLEAR)  # some alternative genotypes do not type the locus
        statuses.update(found)
    if not statuses:
        return None, f"no {gene} allele in '{value}'"
    if statuses == {POSITIVE}:
        return POSITIVE, ""
    if statuses == {NEGATIVE}:
        return NEGATIVE, ""
    return None, f"'{value}' is ambiguous about {marker}"


def _without_spaces_around_operators(text: str) -> str:
    """'A*01 / A*02 + B*07' -> 'A*01/A*02+B*07'. Split and stripped, in linear time: the
    pattern ``\\s*([\\^|+~/])\\s*`` tried again at every space of a long run of spaces
    (quadratic: 65,000 spaces took 24 s)."""
    parts = _OPERATORS.split(text)
    return "".join(p if i % 2 else p.strip() for i, p in enumerate(parts))


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
        fields = _fields(m.group("fields"))
        if len(fields) >= 2:
            name = f"HLA-{m.group('locus')}*{fields[0]}:{fields[1]}"
            if name in markers:
                found.add(name)
    return found
