"""An app can be closed (``Services.close``): what is waiting is written, its background
threads end and its database connections close, and it still answers after, starting them
again. A server process exits instead; a process that makes many apps (the tests) needs it."""

from __future__ import annotations

import threading
import time

from builders import codeine_cards
from sqlalchemy import func, select

from cds_service.store.tables import hook_calls_table
from cds_service.web.app import create_app
from cds_service.web.wiring import services


def _threads_started_since(before: set[threading.Thread]) -> set[str]:
    deadline = time.monotonic() + 5
    while True:
        new = {t.name for t in threading.enumerate() if t not in before and t.is_alive()}
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.02)


def test_a_closed_app_has_written_its_cards_and_counts_and_left_no_thread(settings):
    before = set(threading.enumerate())
    app = create_app(settings)
    client = app.test_client()
    codeine_cards(client, "o1", phenotype="Poor Metabolizer")
    wired = services(app)
    assert _threads_started_since(before), "the call started no background thread"

    wired.close()

    assert _threads_started_since(before) == set()
    assert len(wired.store.card_log.all()) == 1
    with wired.store.engine.connect() as conn:
        calls = select(func.sum(hook_calls_table.c.calls)).where(hook_calls_table.c.drug == "")
        assert conn.execute(calls).scalar_one() == 1


def test_a_closed_app_still_answers_and_logs(settings):
    app = create_app(settings)
    client = app.test_client()
    codeine_cards(client, "o1", phenotype="Poor Metabolizer")
    services(app).close()
    codeine_cards(client, "o2", phenotype="Poor Metabolizer")
    assert len(services(app).store.card_log.all()) == 2
