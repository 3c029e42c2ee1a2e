"""The card log, the site policy and the report on a real PostgreSQL (the throw-away cluster of
``test_feedback_postgres``; skips where no PostgreSQL server is installed)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from builders import APAP_CODEINE, TRAMADOL, hook_request, med_order, phenotype_obs, with_results
from report_history import OCTOBER, assert_report_matches_the_seeded_month, seed
from sqlalchemy import text

from cds_service.governance.report import build
from cds_service.governance.report_page import html_page
from cds_service.settings import Settings
from cds_service.store import schema
from cds_service.store.feedback import FeedbackStore
from cds_service.web.app import create_app


def _fresh(url: str) -> FeedbackStore:
    store = FeedbackStore(url)
    schema.upgrade(store.engine)
    with store.engine.begin() as conn:
        conn.execute(text("TRUNCATE card_log, feedback, hook_calls"))
    return store


def test_report_figures_match_the_seeded_month_in_postgresql(postgres_url):
    store = _fresh(postgres_url)
    seed(store)
    assert_report_matches_the_seeded_month(store)
    page = html_page(build(store.engine, *OCTOBER))
    charts = [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", page, re.DOTALL)]
    assert len(charts) == 3


def test_silent_and_switched_cards_are_logged_in_postgresql(postgres_url, tmp_path):
    _fresh(postgres_url)
    site = tmp_path / "site.json"
    site.write_text('{"default": "silent", "drugs": {"codeine": "on"}}')
    app = create_app(Settings(database_url=postgres_url, site_config=site))
    client = app.test_client()
    orders = [med_order(APAP_CODEINE, order_id="rx-1"), med_order(TRAMADOL, order_id="rx-2")]
    body = hook_request(
        "order-sign", orders, prefetch=with_results(phenotype_obs("Ultrarapid Metabolizer"))
    )
    cards = client.post("/cds-services/pgx-order-sign", json=body).get_json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["codeine-cyp2d6-um"]
    rows = app.extensions["pgx"].store.card_log.all()
    assert sorted((r["recommendation_id"], r["shown"]) for r in rows) == [
        ("codeine-cyp2d6-um", True),
        ("tramadol-cyp2d6-um", False),
    ]
    assert all(r["issued_at"].utcoffset() is not None for r in rows)
