"""core/remembered.py: each answer worked out once; memory bounded."""

from __future__ import annotations

from pathlib import Path

from cds_service.core.remembered import Remembered
from cds_service.knowledge.loader import Knowledge


def test_an_answer_is_worked_out_once_and_the_store_is_bounded():
    asked: list[str] = []
    kept: Remembered[str] = Remembered(limit=3)

    def work(q: str) -> str:
        asked.append(q)
        return q.upper()

    assert [kept.get(q, lambda q=q: work(q)) for q in "abab"] == ["A", "B", "A", "B"]
    assert asked == ["a", "b"]
    for q in "cdefg":
        kept.get(q, lambda q=q: work(q))
    assert len(kept) <= 3
    assert kept.get("a", lambda: work("a")) == "A" and asked[-1] == "a"  # let go, worked again


def test_each_knowledge_keeps_its_own_answers():
    root = Path(__file__).resolve().parents[2] / "knowledge"
    one, other = Knowledge(root), Knowledge(root)
    one.remembered("x").get("q", lambda: "one's")
    assert one.remembered("x") is one.remembered("x")
    assert other.remembered("x").get("q", lambda: "other's") == "other's"
