"""Database work with a deadline (db_guard.Bounded): calls at the same moment all get their
answer; work stuck on a database that does not answer is given up on, and while it is still
stuck new work is refused at once instead of piling up behind it."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine

from cds_service.store.db_guard import Bounded, DatabaseTimeout


@pytest.fixture
def bounded(tmp_path):
    return Bounded(create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}"), "test")


def test_work_running_for_other_calls_at_the_same_moment_is_waited_for_not_refused(bounded):
    """A gunicorn worker has several threads: a healthy database serves them all."""
    results: list[object] = []

    def call() -> None:
        try:
            results.append(bounded.run(lambda: time.sleep(0.05) or "ok", timeout=2))
        except DatabaseTimeout as exc:
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["ok"] * 12


def test_stuck_work_is_given_up_on_and_then_new_work_is_refused_until_it_returns(bounded):
    release = threading.Event()
    for _ in range(2):  # the database stops answering: two calls give up after the deadline
        started = time.monotonic()
        with pytest.raises(DatabaseTimeout):
            bounded.run(release.wait, timeout=0.1)
        assert time.monotonic() - started < 1
    started = time.monotonic()
    with pytest.raises(DatabaseTimeout, match="still waiting"):
        bounded.run(lambda: "never run", timeout=5)
    assert time.monotonic() - started < 0.05  # refused at once, not after 5 s
    release.set()  # the database answers again
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            assert bounded.run(lambda: "back", timeout=1) == "back"
            break
        except DatabaseTimeout:
            time.sleep(0.01)
    else:
        pytest.fail("work was still refused after the stuck work returned")


def test_an_in_memory_database_is_used_from_the_callers_thread():
    bounded = Bounded(create_engine("sqlite://"), "test")
    assert bounded.run(lambda: threading.current_thread(), timeout=1) is threading.current_thread()


def test_submitted_work_runs_on_the_pool_without_the_caller_waiting(bounded):
    ran = threading.Event()
    started = time.monotonic()
    assert bounded.submit(lambda: (time.sleep(0.2), ran.set()))
    assert time.monotonic() - started < 0.15  # not waited for
    assert ran.wait(5)


def test_an_in_memory_database_declines_submitted_work():
    """Its work must run in the caller's thread (one in-memory database per thread)."""
    assert not Bounded(create_engine("sqlite://"), "test").submit(lambda: None)
