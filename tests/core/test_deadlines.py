"""The deadline watchdog (deadlines.py): deadlines expire on time, done ones never, and arming
one that is not due before the watchdog's next look does not wake its thread."""

from __future__ import annotations

import threading
import time

import pytest

from cds_service.core import deadlines


class Recorded:
    def __init__(self) -> None:
        self.done = False
        self.expired_at: float | None = None
        self.expired = threading.Event()

    def expire(self) -> None:
        self.expired_at = time.monotonic()
        self.expired.set()


@pytest.fixture
def watchdog() -> deadlines.Watchdog:
    return deadlines.Watchdog()


def _settled(watchdog: deadlines.Watchdog) -> None:
    """Let the thread start and wait for its next look."""
    watchdog.arm(time.monotonic() - 1, Recorded())  # (starts the thread, expires at once)
    time.sleep(0.05)


def test_a_deadline_soon_wakes_the_watchdog_and_expires_on_time(watchdog):
    _settled(watchdog)
    before = watchdog.wakeups
    armed = time.monotonic()
    soon = Recorded()
    watchdog.arm(armed + 0.05, soon)
    assert soon.expired.wait(2)
    assert watchdog.wakeups == before + 1
    assert soon.expired_at is not None and 0.05 <= soon.expired_at - armed < 0.3


def test_a_deadline_past_the_next_look_does_not_wake_the_watchdog_and_expires_on_time(watchdog):
    _settled(watchdog)
    before = watchdog.wakeups
    armed = time.monotonic()
    later = Recorded()
    watchdog.arm(armed + deadlines.TICK_S + 0.3, later)
    assert watchdog.wakeups == before  # the thread was left to sleep
    assert later.expired.wait(5)
    assert later.expired_at is not None
    assert deadlines.TICK_S + 0.3 <= later.expired_at - armed < deadlines.TICK_S + 0.6


def test_a_sooner_deadline_armed_after_a_later_one_expires_first(watchdog):
    _settled(watchdog)
    armed = time.monotonic()
    later, sooner = Recorded(), Recorded()
    watchdog.arm(armed + 0.6, later)
    watchdog.arm(armed + 0.05, sooner)
    assert sooner.expired.wait(2) and later.expired.wait(2)
    assert sooner.expired_at is not None and later.expired_at is not None
    assert sooner.expired_at < later.expired_at
    assert later.expired_at - armed >= 0.6


def test_a_deadline_done_in_time_never_expires(watchdog):
    _settled(watchdog)
    finished, witness = Recorded(), Recorded()
    watchdog.arm(time.monotonic() + 0.05, finished)
    watchdog.disarm(finished)
    watchdog.arm(time.monotonic() + 0.1, witness)
    assert witness.expired.wait(2)
    time.sleep(0.05)
    assert not finished.expired.is_set()
