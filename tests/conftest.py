from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service.knowledge.loader import Knowledge
from cds_service.settings import Settings, default_knowledge_dir
from cds_service.web.app import create_app
from cds_service.web.wiring import Services


class BufferedClient(FlaskClient):
    """Flask's test client, buffered: the app's answer is read whole and closed before the
    call returns, as a server does, so what the app does after its answer (the card log,
    metrics, the request's log line) has happened when a test looks."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


Flask.test_client_class = BufferedClient


@pytest.fixture(autouse=True)
def generous_override_check(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unit tests give the card log's override check more time than a hook call gets (0.5 s):
    on a loaded CI machine one slow first query would pause the check for 15 s and make the
    suppression tests fail for the machine, not the code. Tests of that budget set it
    themselves; the integration tests keep the real one."""
    if "integration" not in request.node.path.parts:
        monkeypatch.setattr("cds_service.store.card_log.HOOK_DB_SECONDS", 3.0)


@pytest.fixture(autouse=True)
def close_apps_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The apps a test makes are closed after it (``Services.close``: their background
    threads end and their database connections close). A server process makes one app; the
    suite makes about a thousand, and left open they held thousands of idle threads and
    gigabytes of memory late in a run. (Apps of module- or session-scoped fixtures are made
    before this fixture starts, and stay open for the tests that share them.)"""
    import cds_service.web.app as web_app

    made: list[Services] = []
    wire = web_app.wire

    def wire_and_keep(settings: Settings) -> Services:
        made.append(wire(settings))
        return made[-1]

    monkeypatch.setattr(web_app, "wire", wire_and_keep)
    yield
    for services in made:
        services.close()


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return Knowledge(default_knowledge_dir())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'feedback.sqlite3'}", fhir_timeout=1.0)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


SERVICE_FOR_HOOK = {
    "order-select": "pgx-order-select",
    "order-sign": "pgx-order-sign",
    "medication-prescribe": "pgx-medication-prescribe",
    "patient-view": "pgx-patient-view",
}


@pytest.fixture
def call(client: FlaskClient):
    """POST a hook request to the service for its hook; returns (status, json)."""

    def _call(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[body['hook']]}", json=body)
        return response.status_code, response.get_json()

    return _call
