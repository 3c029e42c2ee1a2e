"""Escaping remembered for short texts answers exactly what escaping each time does."""

from __future__ import annotations

import pytest

from cds_service.core import wording

TEXTS = [
    "HLA-B*15:02 … HLA-A*31:01",
    "# not a heading\n1. not a list\n- nor this",
    "<b>bold</b> & [link](http://x) `code` |cell| ~strike~",
    "  plain words  with\tspaces\n",
    "x" * (wording.REMEMBERED_UP_TO + 1) + "*",  # too long to keep: escaped each time
]


@pytest.mark.parametrize("text", TEXTS)
def test_remembered_escaping_is_the_same_as_escaping_each_time(text):
    for _ in range(2):  # the second answer is the remembered one
        assert wording.escaped(text) == wording._escape(text)
        assert wording.inert(text) == wording._inert(text, None)
        assert wording.inert(text, 20) == wording._inert(text, 20)


def test_a_long_text_is_not_kept_and_a_short_one_is():
    caches = (wording._inert_remembered, wording._escaped_remembered)
    wording._inert_remembered.cache_clear()
    wording._escaped_remembered.cache_clear()
    wording.inert("y" * (wording.REMEMBERED_UP_TO + 1))
    wording.escaped("y" * (wording.REMEMBERED_UP_TO + 1))
    assert [c.cache_info().currsize for c in caches] == [0, 0]
    wording.inert("a result's *label*")
    wording.escaped("a guideline's *advice*")
    assert [c.cache_info().currsize for c in caches] == [1, 1]
