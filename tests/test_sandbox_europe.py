"""The European example of the sandbox kit (``sandbox/europe``): a site file choosing DPWG and
orders coded only with ATC or SNOMED CT / dm+d codes give the cards its index promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.settings import Settings
from cds_service.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
EUROPE = ROOT / "sandbox" / "europe"
EXPECTED = json.loads((EUROPE / "requests" / "expected.json").read_text())
INDEX = json.loads((EUROPE / "index.json").read_text())


@pytest.fixture(scope="module")
def europe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("europe")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'feedback.sqlite3'}",
        fhir_timeout=1.0,
        site_config=EUROPE / "site.json",
    )
    with create_app(settings).test_client() as client:
        yield client


def test_every_attempt_has_its_request():
    assert set(EXPECTED) == {p.name for p in (EUROPE / "requests").glob("order-*.json")}
    assert len(EXPECTED) == len(INDEX)
    assert json.loads((EUROPE / "site.json").read_text())["guidelines"] == ["dpwg"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_european_request_gives_the_promised_card(europe, name):
    expected = EXPECTED[name]
    body = json.loads((EUROPE / "requests" / name).read_text())
    [order] = [e["resource"] for e in body["context"]["draftOrders"]["entry"]]
    systems = {c["system"] for c in order["medicationCodeableConcept"]["coding"]}
    assert systems <= {"http://www.whocc.no/atc", "http://snomed.info/sct"}  # no RxNorm
    assert "text" not in order["medicationCodeableConcept"]
    response = europe.post("/cds-services/pgx-order-select", json=body)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    if expected["indicator"] is None:
        assert cards == [], expected["expect"]
        return
    [card] = cards
    assert card["indicator"] == expected["indicator"]
    assert expected["expect"].startswith(card["summary"]), (card["summary"], expected["expect"])
    assert card["source"]["label"].startswith("DPWG")
