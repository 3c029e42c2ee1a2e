"""Answers worked out once and kept, by their question, within a bound on memory."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

#: Answers kept at most (then all are let go and worked out again as asked).
LIMIT = 4096


class Remembered(Generic[V]):
    """Each answer worked out once, by its question, and kept; emptied when it holds
    ``limit``. A plain dictionary: two threads may work out the same answer, never get a
    wrong one (the work is pure)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._answers: dict[Hashable, V] = {}

    def get(self, question: Hashable, work: Callable[[], V]) -> V:
        try:
            return self._answers[question]
        except KeyError:
            pass
        answer = work()
        if len(self._answers) >= self.limit:
            self._answers.clear()
        self._answers[question] = answer
        return answer

    def __len__(self) -> int:
        return len(self._answers)
