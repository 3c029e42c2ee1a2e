"""Small wording helpers shared by the texts the service writes (cards, notes, the trace)."""

from __future__ import annotations

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
