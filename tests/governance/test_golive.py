"""Go-live you can see (issue 27, item 2): the site policy at start-up, in /readyz and in the
metrics; patient-view cards logged and counted as their own; every call and judged order
counted for the report's denominator."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from builders import (
    APAP_CODEINE,
    TRAMADOL,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)
from sqlalchemy import select

from cds_service.store.tables import hook_calls_table
from cds_service.web.app import create_app

UM = phenotype_obs("Ultrarapid Metabolizer")


def _app(tmp_path: Path, settings, config: dict[str, Any] | None):
    update: dict[str, Any] = {}
    if config is not None:
        path = tmp_path / "site.json"
        path.write_text(json.dumps(config))
        update["site_config"] = path
    return create_app(settings.model_copy(update=update))


def _sample(client, name: str, **labels: str) -> float:
    total = 0.0
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_start_up_logs_the_site_file_its_hash_and_its_mode(tmp_path, settings, caplog):
    with caplog.at_level(logging.INFO, logger="cds_service"):
        _app(tmp_path, settings, {"silent": True})
    path = tmp_path / "site.json"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # what `sha256sum` prints
    (line,) = [r.getMessage() for r in caplog.records if "site policy" in r.getMessage()]
    assert line.startswith("site policy: silent")
    assert str(path) in line and digest in line


def test_start_up_says_when_there_is_no_site_file(tmp_path, settings, caplog):
    with caplog.at_level(logging.INFO, logger="cds_service"):
        _app(tmp_path, settings, None)
    (line,) = [r.getMessage() for r in caplog.records if "site policy" in r.getMessage()]
    assert line.startswith("site policy: live") and "PGX_CDS_SITE_CONFIG unset" in line


def test_readyz_shows_silent_mode_the_file_hash_and_the_knowledge(tmp_path, settings, knowledge):
    app = _app(tmp_path, settings, {"silent": True})
    body = app.test_client().get("/readyz").get_json()
    digest = hashlib.sha256((tmp_path / "site.json").read_bytes()).hexdigest()
    assert body["site"] == {
        "mode": "silent",
        "silent": True,
        "file": str(tmp_path / "site.json"),
        "sha256": digest,
        "ehr": "standard",
    }
    assert body["knowledge"] == knowledge.version
    assert body["status"] == "ok"  # a policy, not a fault


def test_readyz_tells_a_staged_go_live_from_a_live_one(tmp_path, settings):
    staged = _app(tmp_path, settings, {"default": "silent", "drugs": {"codeine": "on"}})
    assert staged.test_client().get("/readyz").get_json()["site"]["mode"] == "staged"
    live = _app(tmp_path, settings, {"drugs": {"codeine": "on"}, "ehr": "epic"})
    site = live.test_client().get("/readyz").get_json()["site"]
    assert (site["mode"], site["ehr"]) == ("live", "epic")
    every_hook_silent = {"hooks": {h: "silent" for h in ("order-select", "order-sign")}}
    every_hook_silent["hooks"] |= {"medication-prescribe": "off", "patient-view": "off"}
    assert _app(tmp_path, settings, every_hook_silent).test_client().get("/readyz").get_json()[
        "site"
    ]["mode"] == ("silent")


def test_silent_cards_are_counted_apart_from_shown_ones(tmp_path, settings):
    app = _app(tmp_path, settings, {"drugs": {"tramadol": "silent"}})
    client = app.test_client()
    codeine = {"drug": "codeine", "gene": "CYP2D6", "indicator": "critical"}
    tramadol = {"drug": "tramadol", "gene": "CYP2D6"}
    before = {
        "codeine": _sample(client, "pgx_cds_cards_total", **codeine, shown="true"),
        "tramadol": _sample(client, "pgx_cds_cards_total", **tramadol, shown="false"),
        "tramadol shown": _sample(client, "pgx_cds_cards_total", **tramadol, shown="true"),
    }
    orders = [med_order(APAP_CODEINE, order_id="rx-1"), med_order(TRAMADOL, order_id="rx-2")]
    body = hook_request("order-select", orders, prefetch=with_results(UM))
    cards = client.post("/cds-services/pgx-order-select", json=body).get_json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["codeine-cyp2d6-um"]
    assert _sample(client, "pgx_cds_cards_total", **codeine, shown="true") == before["codeine"] + 1
    assert (
        _sample(client, "pgx_cds_cards_total", **tramadol, shown="false") == before["tramadol"] + 1
    )
    assert (
        _sample(client, "pgx_cds_cards_total", **tramadol, shown="true") == before["tramadol shown"]
    )


def test_patient_view_cards_are_counted_and_logged_as_their_own(tmp_path, settings):
    app = _app(tmp_path, settings, None)
    client = app.test_client()
    labels = {"drug": "patient-view", "gene": "CYP2D6", "indicator": "info", "shown": "true"}
    before = _sample(client, "pgx_cds_cards_total", **labels)
    other = _sample(client, "pgx_cds_cards_total", drug="other")
    body = hook_request("patient-view", [], prefetch=with_results(UM))
    body["context"].pop("draftOrders")
    cards = client.post("/cds-services/pgx-patient-view", json=body).get_json()["cards"]
    assert len(cards) == 1
    assert _sample(client, "pgx_cds_cards_total", **labels) == before + 1
    assert _sample(client, "pgx_cds_cards_total", drug="other") == other == 0
    (row,) = app.extensions["pgx"].store.card_log.all()
    assert (row["drug"], row["genes"], row["hook"], row["shown"]) == (
        "patient-view",
        "CYP2D6",
        "patient-view",
        True,
    )
    assert row["card_uuid"] == cards[0]["uuid"]  # (so its feedback finds it)
    assert row["phenotype"] == "CYP2D6 Ultrarapid Metabolizer"


def test_a_silent_patient_view_is_evaluated_and_logged_not_shown(tmp_path, settings):
    app = _app(tmp_path, settings, {"hooks": {"patient-view": "silent"}})
    body = hook_request("patient-view", [], prefetch=with_results(UM))
    body["context"].pop("draftOrders")
    answer = app.test_client().post("/cds-services/pgx-patient-view", json=body).get_json()
    assert answer["cards"] == []
    (row,) = app.extensions["pgx"].store.card_log.all()
    assert (row["drug"], row["shown"]) == ("patient-view", False)


def test_calls_and_judged_orders_are_counted_for_the_report(tmp_path, settings):
    app = _app(tmp_path, settings, None)
    client = app.test_client()
    orders = [
        med_order(APAP_CODEINE, order_id="rx-1"),
        med_order(TRAMADOL, order_id="rx-2"),
        med_order(("197805", "Ibuprofen 400 MG Oral Tablet"), order_id="rx-3"),
        med_order(("310965", "Ibuprofen 200 MG Oral Tablet"), order_id="rx-4"),
    ]
    for _ in range(2):
        body = hook_request("order-sign", orders, prefetch=with_results(UM))
        assert client.post("/cds-services/pgx-order-sign", json=body).status_code == 200
    no_drug = hook_request("order-select", [med_order(("1049621", "Oxycodone 5 MG"))])
    assert client.post("/cds-services/pgx-order-select", json=no_drug).status_code == 200
    counts = app.extensions["pgx"].engine.call_counts
    assert counts.flush()
    with counts.engine.connect() as conn:
        rows = conn.execute(select(hook_calls_table)).mappings().all()
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for r in rows:
        calls, n = totals.get((r["service_id"], r["drug"]), (0, 0))
        totals[(r["service_id"], r["drug"])] = (calls + r["calls"], n + r["orders"])
    assert totals[("pgx-order-sign", "")] == (2, 8)  # two calls of four orders
    assert totals[("pgx-order-sign", "codeine")] == (2, 2)
    assert totals[("pgx-order-sign", "ibuprofen")] == (2, 4)
    assert totals[("pgx-order-select", "")] == (1, 1)
    assert ("pgx-order-select", "oxycodone") not in totals  # (covered drugs only)
