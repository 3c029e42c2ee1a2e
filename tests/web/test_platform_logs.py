"""Logs and metrics a platform team can use (issue 27, item 4): the request line as JSON
fields (a hook call's hookInstance among them, escaped or withheld), probes and scrapes at
DEBUG, latency buckets from half a millisecond, a build-info metric."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from builders import APAP_CODEINE, TRAMADOL, hook_request, med_order, phenotype_obs, with_results

from cds_service import __version__
from cds_service.core.logsafe import patient_ref
from cds_service.settings import Settings
from cds_service.web import metrics
from cds_service.web.app import create_app
from cds_service.web.logs import NOT_LOGGED, hook_instance_from

UM = phenotype_obs("Ultrarapid Metabolizer")
INSTANCE = "f399c67c-c703-11ea-af16-460231621f93"  # Epic's example: a version-1 UUID


def _json_app(tmp_path: Path, level: str = "INFO", site: dict | None = None):
    update: dict[str, Any] = {}
    if site is not None:
        (tmp_path / "site.json").write_text(json.dumps(site))
        update["site_config"] = tmp_path / "site.json"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}",
        log_format="json",
        log_level=level,
        **update,
    )
    return create_app(settings).test_client()


def _lines(capsys) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


def _request_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "route" in line]


def test_the_json_line_of_a_hook_call_carries_its_fields_and_hook_instance(tmp_path, capsys):
    client = _json_app(tmp_path, site={"drugs": {"tramadol": "silent"}})
    capsys.readouterr()
    orders = [med_order(APAP_CODEINE, order_id="rx-1"), med_order(TRAMADOL, order_id="rx-2")]
    body = hook_request("order-select", orders, prefetch=with_results(UM))
    body["hookInstance"] = INSTANCE
    answer = client.post(
        "/cds-services/pgx-order-select", json=body, headers={"X-Request-ID": "rid-42"}
    )
    assert answer.status_code == 200 and len(answer.get_json()["cards"]) == 1
    (line,) = _request_lines(_lines(capsys))
    assert line["level"] == "INFO" and line["request_id"] == "rid-42"
    assert {k: line[k] for k in ("method", "route", "status", "service", "hook")} == {
        "method": "POST",
        "route": "/cds-services/<service_id>",
        "status": 200,
        "service": "pgx-order-select",
        "hook": "order-select",
    }
    assert line["hookInstance"] == INSTANCE
    assert line["cards"] == {"critical": 1, "warning": 0, "info": 0}
    assert line["silent_cards"] == 1  # tramadol, silent by the site policy
    assert line["patient"] == patient_ref("pat-1") and "pat-1" not in json.dumps(line)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert INSTANCE in line["message"]  # the sentence too, for the text format


def test_a_412_line_still_names_its_hook_instance(tmp_path, capsys):
    client = _json_app(tmp_path)
    capsys.readouterr()
    body = hook_request("order-sign", [med_order(APAP_CODEINE)])  # no prefetch, no FHIR
    body["hookInstance"] = INSTANCE
    assert client.post("/cds-services/pgx-order-sign", json=body).status_code == 412
    (line,) = _request_lines(_lines(capsys))
    assert (line["status"], line["hookInstance"]) == (412, INSTANCE)


@pytest.mark.parametrize(
    "sent",
    [
        "x" * 101,
        "abc\nINFO forged line",
        "id with spaces",
        "eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",  # a JWT
        "patient Jane Doe",
    ],
)
def test_a_hook_instance_that_is_not_a_plain_id_is_not_logged(tmp_path, capsys, sent):
    client = _json_app(tmp_path)
    capsys.readouterr()
    body = hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=with_results(UM))
    body["hookInstance"] = sent
    assert client.post("/cds-services/pgx-order-select", json=body).status_code == 200
    logged = capsys.readouterr().err
    (line,) = _request_lines([json.loads(x) for x in logged.splitlines() if x])
    assert line["hookInstance"] == NOT_LOGGED
    assert sent not in logged and "forged" not in logged


def test_hook_instance_from_keeps_uuids_and_plain_ids():
    assert hook_instance_from(INSTANCE) == INSTANCE
    assert hook_instance_from("d1577c69-dfbe-44ad-ba6d-3e05e953b2ea") != NOT_LOGGED
    assert hook_instance_from("") == NOT_LOGGED


def test_probe_and_scrape_lines_are_debug_only(tmp_path, capsys):
    client = _json_app(tmp_path)
    capsys.readouterr()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200
    assert _request_lines(_lines(capsys)) == []  # nothing at INFO
    debug = _json_app(tmp_path, level="DEBUG")
    capsys.readouterr()
    debug.get("/healthz")
    (line,) = _request_lines(_lines(capsys))
    assert (line["level"], line["route"]) == ("DEBUG", "/healthz")


def test_the_text_format_keeps_the_sentence(client, caplog):
    caplog.set_level(logging.INFO, logger="cds_service")
    body = hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=with_results(UM))
    body["hookInstance"] = INSTANCE
    client.post("/cds-services/pgx-order-select", json=body)
    (message,) = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("POST /cds-services")
    ]
    assert message.endswith(f"1 card(s) for {patient_ref('pat-1')}, hookInstance {INSTANCE}")


def test_latency_buckets_start_at_half_a_millisecond(client):
    assert metrics.LATENCY_BUCKETS[0] == 0.0005 and list(metrics.LATENCY_BUCKETS) == sorted(
        metrics.LATENCY_BUCKETS
    )
    client.get("/healthz")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'pgx_cds_http_request_duration_seconds_bucket{endpoint="healthz",le="0.0005"' in text


def test_the_build_info_metric_names_the_versions(client, knowledge):
    text = client.get("/metrics").get_data(as_text=True)
    # (one process here makes many apps; a replica makes one)
    lines = [x for x in text.splitlines() if x.startswith("pgx_cds_build_info{")]
    assert any(
        f'version="{__version__}"' in line
        and f'knowledge="{knowledge.version}"' in line
        and 'site_mode="live"' in line
        and 'ehr="standard"' in line
        and line.endswith(" 1.0")
        for line in lines
    )
