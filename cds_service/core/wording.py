"""Small wording helpers shared by the texts the service writes (cards, notes, the trace)."""

from __future__ import annotations

import re

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


_MARKDOWN = re.compile(r"([\\`*_\[\]{}()#+!|~])")


def inert(text: str, limit: int | None = None) -> str:
    """Prose with words from the request or the lab (a result's label, the order's text):
    one line, no HTML, and every Markdown character escaped (table cells included), so no
    link, emphasis or fake heading can ride in (the public sandbox renders Markdown with
    raw HTML)."""
    flat = " ".join(text.split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", plain(flat))
