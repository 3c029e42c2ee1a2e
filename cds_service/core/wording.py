"""Small wording helpers shared by the texts the service writes (cards, notes, the trace)."""

from __future__ import annotations

import re
from functools import lru_cache

SUMMARY_LIMIT = 140  # CDS Hooks: a card summary is under 140 characters


def number(value: float) -> str:
    """1.0 -> '1', 0.25 -> '0.25', 56.25 -> '56.25' (at most two decimals)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def with_article(words: str) -> str:
    """'intermediate metabolizer' -> 'an intermediate metabolizer'."""
    return ("an " if words[:1] in "aeiou" else "a ") + words


def summary(text: str) -> str:
    """A card summary within the CDS Hooks limit (cut with an ellipsis)."""
    return text if len(text) < SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 4] + "…"


def plain(text: str) -> str:
    """Text from the request, made inert in Markdown that clients may render as HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


#: Characters CommonMark (and GitHub's tables and strikethrough) may read as inline markup or
#: the start of an HTML tag or entity, wherever they stand.
_INLINE = re.compile(r"([\\`*_\[\]<>|~&])")
#: What makes a line a heading, quote, list item, rule or table row where it starts.
#: (Its spaces are the line's own, not the blank lines before it too: tried from each line
#: start, ``\s*`` ran across every line after it, in time growing with their number squared.)
_LINE_START = re.compile(r"^([^\S\n]*)(?:([#>+=-])|(\d{1,9})([.)]))", re.MULTILINE)


#: Texts up to this long are escaped once and remembered (``escaped``, ``inert``): a card
#: writes the same knowledge texts, names and results call after call. Longer ones are
#: escaped each time, so a caller's long text is never kept (1,024 of each kept at most: a
#: few MB at worst).
REMEMBERED_UP_TO = 1_000


def escaped(text: str) -> str:
    """Trusted prose (the knowledge's texts, the service's own notes and names) into
    Markdown, shown as written: every character CommonMark could read as emphasis, code,
    strikethrough, a link, a table cell or HTML is backslash-escaped (``HLA-B*15:02 …
    HLA-A*31:01`` keeps both stars instead of turning the words between into italics), and
    so is a line start that would make a heading, quote or list. Brackets, parentheses and
    other punctuation that only matter after those stay as they are, so the text reads
    cleanly where a client shows it raw. Request text goes through ``inert`` instead."""
    if len(text) <= REMEMBERED_UP_TO:
        return _escaped_remembered(text)
    return _escape(text)


def _escape(text: str) -> str:
    out = _INLINE.sub(r"\\\1", text)
    return _LINE_START.sub(_escape_line_start, out)


_escaped_remembered = lru_cache(maxsize=1024)(_escape)


def _escape_line_start(m: re.Match[str]) -> str:
    if m.group(2):  # '# heading', '> quote', '- item', '+ item', '=' or '-' underline
        return f"{m.group(1)}\\{m.group(2)}"
    return f"{m.group(1)}{m.group(3)}\\{m.group(4)}"  # '1. item' -> '1\. item'


def code_span(text: str, *, table: bool = False, limit: int | None = None) -> str:
    """A lab's diplotype or typing (``*1/*2x2``, ``HLA-B*15:02+HLA-B*07:02``) as a Markdown code
    span: shown verbatim, stars and all. One line, no backticks, no HTML (kept inert even by a
    client that does not follow CommonMark); in a table cell, ``|`` is escaped as GitHub's
    tables require."""
    flat = " ".join(plain(text).replace("`", "").split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return "`" + (flat.replace("|", "\\|") if table else flat) + "`"


_MARKDOWN = re.compile(r"([\\`*_\[\]{}()#+!|~])")


def inert(text: str, limit: int | None = None) -> str:
    """Prose with words from the request or the lab (a result's label, the order's text):
    one line, no HTML, and every Markdown character escaped (table cells included), so no
    link, emphasis or fake heading can ride in (the public sandbox renders Markdown with
    raw HTML)."""
    if len(text) <= REMEMBERED_UP_TO:
        return _inert_remembered(text, limit)
    return _inert(text, limit)


def _inert(text: str, limit: int | None) -> str:
    flat = " ".join(text.split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", plain(flat))


_inert_remembered = lru_cache(maxsize=1024)(_inert)
