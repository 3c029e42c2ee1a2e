"""core/inline.py: a request served on the worker's loop is handed to a thread where it
would wait, with what it settled; anywhere else waiting goes on as it is."""

from __future__ import annotations

import threading

import pytest

from cds_service.core import inline


def test_off_the_loop_waiting_is_allowed():
    inline.would_wait("a read")  # (nothing raised: a request thread, the command line)
    inline.settle("client", "ignored")
    assert inline.settled("client") is None


def test_on_the_loop_a_wait_hands_the_request_off_with_what_it_settled():
    with pytest.raises(inline.HandOff) as handed, inline.on_loop():
        inline.settle("client", ("token", {"iss": "x"}))
        inline.would_wait("a FHIR read")
    assert handed.value.carried == {"client": ("token", {"iss": "x"})}
    assert "a FHIR read" in str(handed.value)
    assert not isinstance(handed.value, Exception)  # no `except Exception` takes it
    inline.would_wait("after")  # the loop is left: allowed again


def test_the_second_attempt_sees_what_the_first_settled_and_only_on_its_thread():
    seen: list[object] = []
    with inline.carrying({"client": "verified"}):
        seen.append(inline.settled("client"))
        other = threading.Thread(target=lambda: seen.append(inline.settled("client")))
        other.start()
        other.join()
        inline.would_wait("a read")  # a request thread may wait
    assert seen == ["verified", None]
    assert inline.settled("client") is None
