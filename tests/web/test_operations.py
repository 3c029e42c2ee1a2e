"""What operators see: /metrics, /readyz, request ids, schema migrations, start-up messages."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import sys

import pytest
import requests
import responses
from builders import APAP_CODEINE, HASH_KEY, hook_request, med_order, phenotype_obs, with_results
from migrating import create_pre_migration_schema, upgrade_concurrently
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from cds_service.cli import main
from cds_service.knowledge.loader import KnowledgeError
from cds_service.settings import Settings
from cds_service.store import schema
from cds_service.store.tables import metadata
from cds_service.web import metrics
from cds_service.web.app import create_app
from cds_service.web.logs import request_id_from

FHIR = "https://ehr.example.org/fhir"
HOOK = "/cds-services/pgx-order-select"


def sample(client, name: str, **labels: str) -> float:
    """The value of one metric sample (0 when absent)."""
    text_ = client.get("/metrics").get_data(as_text=True)
    total = 0.0
    for line in text_.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def codeine(**kwargs) -> dict:
    return hook_request("order-select", [med_order(APAP_CODEINE)], **kwargs)


# -- /metrics ---------------------------------------------------------------------------------


def test_metrics_count_cards_by_drug_gene_and_indicator(client):
    labels = {"drug": "codeine", "gene": "CYP2D6", "indicator": "critical"}
    before = sample(client, "pgx_cds_cards_total", **labels)
    for _ in range(2):
        body = codeine(prefetch=with_results(phenotype_obs("Ultrarapid Metabolizer")))
        assert len(client.post(HOOK, json=body).get_json()["cards"]) == 1
    assert sample(client, "pgx_cds_cards_total", **labels) == before + 2
    assert (
        sample(
            client,
            "pgx_cds_http_requests_total",
            endpoint="hook",
            service="pgx-order-select",
            status="200",
        )
        >= 2
    )
    assert "pgx_cds_http_request_duration_seconds_bucket" in client.get("/metrics").text


def test_metrics_count_412s_and_fhir_reads_by_outcome(client):
    before_412 = sample(client, "pgx_cds_precondition_failed_total", service="pgx-order-select")
    assert client.post(HOOK, json=codeine()).status_code == 412
    assert sample(client, "pgx_cds_precondition_failed_total", service="pgx-order-select") == (
        before_412 + 1
    )
    before = {
        o: sample(client, "pgx_cds_fhir_requests_total", outcome=o) for o in ("ok", "timeout")
    }
    with responses.RequestsMock() as mocked:
        mocked.get(re.compile(f"{FHIR}/Observation.*"), body=requests.Timeout())
        answer = client.post(HOOK, json=codeine(fhir_server=FHIR, token="t"))
    assert answer.status_code == 412
    assert sample(client, "pgx_cds_fhir_requests_total", outcome="timeout") > before["timeout"]
    assert sample(client, "pgx_cds_fhir_requests_total", outcome="ok") == before["ok"]


def test_metrics_count_feedback_outcomes_only_when_stored(client):
    path = "/cds-services/pgx-order-select/feedback"
    before = sample(client, "pgx_cds_feedback_total", outcome="overridden")
    item = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-29T10:00:00Z"}
    assert client.post(path, json={"feedback": [item]}).status_code == 200
    assert client.post(path, json={"feedback": [{**item, "outcome": "?"}]}).status_code == 400
    assert sample(client, "pgx_cds_feedback_total", outcome="overridden") == before + 1


def test_metrics_count_a_resent_feedback_item_once(client):
    """The counter matches what is stored (and what `pgx-cds report` counts): an EHR's retry
    is acknowledged but neither stored nor counted again."""
    path = "/cds-services/pgx-order-sign/feedback"
    labels = {"service": "pgx-order-sign", "outcome": "overridden"}
    before = sample(client, "pgx_cds_feedback_total", **labels)
    item = {"card": "c-9", "outcome": "overridden", "outcomeTimestamp": "2026-11-29T10:00:00Z"}
    stored = [client.post(path, json={"feedback": [item]}).get_json()["stored"] for _ in range(3)]
    assert stored == [1, 0, 0]
    twice = {**item, "card": "c-10"}
    assert client.post(path, json={"feedback": [twice, twice]}).get_json()["stored"] == 1
    assert sample(client, "pgx_cds_feedback_total", **labels) == before + 2


def test_metrics_show_the_knowledge_version(client, knowledge):
    assert sample(client, "pgx_cds_knowledge_info", version=knowledge.version) == 1


# -- /readyz and request ids -------------------------------------------------------------------


def test_readyz_hides_internal_exception_names(client, app, caplog):
    def broken() -> None:
        raise OperationalError("SELECT 1", {}, Exception("password=secret host=db"))

    app.extensions["pgx"].store.ping = broken
    with caplog.at_level(logging.WARNING):
        answer = client.get("/readyz")
    assert answer.status_code == 200  # degraded, not out of the load balancer (issue 10)
    body = answer.get_json()
    assert body["status"] == "degraded"
    assert body["database"] == "unavailable" and body["knowledge"]
    assert "OperationalError" not in answer.get_data(as_text=True)
    assert "secret" not in answer.get_data(as_text=True) + caplog.text


def test_readyz_says_when_client_authentication_is_off(client):
    body = client.get("/readyz").get_json()
    assert body["status"] == "ok" and body["degraded"] == []
    assert body["client_authentication"] == "off"


def test_an_incoming_request_id_is_kept_and_a_forged_one_replaced(client):
    kept = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["X-Request-ID"] == "abc-123"
    for forged in ('x" level="ERROR', "a" * 500):
        answer = client.get("/healthz", headers={"X-Request-ID": forged})
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])


def test_json_log_lines_carry_the_request_id(tmp_path, capsys):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", log_format="json", log_level="INFO"
    )
    client = create_app(settings).test_client()
    client.get("/cds-services", headers={"X-Request-ID": "rid-7"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert any(line.get("request_id") == "rid-7" for line in lines)


@responses.activate
def test_log_lines_of_the_fhir_reads_made_side_by_side_carry_the_request_id(tmp_path, capsys):
    """The reads of the patient and the active medications run on threads of their own:
    their warnings (here the FHIR server refusing the token) still name the call."""

    fhir = "https://ehr.example.org/fhir"
    responses.get(
        re.compile(re.escape(f"{fhir}/Observation") + ".*"),
        json={"resourceType": "Bundle", "type": "searchset"},
    )
    for what in ("MedicationRequest", "Patient/pat-1"):  # read on side threads
        responses.get(re.compile(re.escape(f"{fhir}/{what}") + ".*"), status=401)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", log_format="json", log_level="INFO"
    )
    client = create_app(settings).test_client()
    body = hook_request("order-select", [med_order(APAP_CODEINE)], fhir_server=fhir, token="t")
    client.post("/cds-services/pgx-order-select", json=body, headers={"X-Request-ID": "rid-9"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    reads = [line for line in lines if "HTTP 401" in line["message"]]
    # the patient's read is awaited (the age rules); the medications' is not needed here
    assert "FHIR read of Patient: HTTP 401" in {line["message"] for line in reads}
    assert all(line.get("request_id") == "rid-9" for line in reads), reads


# -- schema migrations -------------------------------------------------------------------------


def test_migrations_make_exactly_the_tables_the_code_uses(tmp_path):
    """A table or column added to the code without a migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    schema.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_a_database_made_by_create_all_is_stamped_and_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    create_pre_migration_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feedback (service_id, card_uuid, outcome, accepted_suggestions, "
                "outcome_timestamp, received_at) VALUES ('s', 'c-1', 'overridden', '[]', "
                "'2026-11-29 10:00:00', '2026-11-29 10:00:00')"
            )
        )
    app = create_app(Settings(database_url=url))
    assert schema.current(engine) == schema.head()
    assert [r["card_uuid"] for r in app.extensions["pgx"].store.all()] == ["c-1"]


def test_without_migrate_on_start_an_old_schema_stops_the_start(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    with pytest.raises(schema.SchemaError, match="pgx-cds db upgrade"):
        create_app(Settings(database_url=url, migrate_on_start=False))
    monkeypatch.setenv("PGX_CDS_DATABASE_URL", url)
    assert main(["db", "current"]) == 0
    assert "revision none" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert f"revision {schema.head()}" in capsys.readouterr().out
    assert "feedback" in inspect(create_engine(url)).get_table_names()
    create_app(Settings(database_url=url, migrate_on_start=False))  # now it starts


def _schema_of_a_newer_version(url: str) -> None:
    """The database as a newer version left it (the image was then rolled back)."""
    engine = create_engine(url)
    schema.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()


@pytest.mark.parametrize("command", [["db", "upgrade"], ["report"], ["purge", "--days", "30"]])
def test_a_schema_newer_than_this_version_stops_with_one_line(
    tmp_path, monkeypatch, capsys, command
):
    url = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    _schema_of_a_newer_version(url)
    capsys.readouterr()  # the set-up's own log lines
    monkeypatch.setenv("PGX_CDS_DATABASE_URL", url)
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "revision 0999" in err and "newer than this version of the service" in err
    assert f"up to {schema.head()}" in err and "deploy the newer version" in err


def test_a_schema_newer_than_this_version_is_named_by_db_current_and_refused_by_the_app(
    tmp_path, monkeypatch, capsys
):
    url = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    _schema_of_a_newer_version(url)
    monkeypatch.setenv("PGX_CDS_DATABASE_URL", url)
    assert main(["db", "current"]) == 0
    out = capsys.readouterr().out
    assert "revision 0999 (newer than this version of the service" in out
    for migrate in (True, False):  # not "run pgx-cds db upgrade": that cannot help
        with pytest.raises(schema.SchemaError, match="newer than this version") as refused:
            create_app(Settings(database_url=url, migrate_on_start=migrate))
        assert "db upgrade" not in str(refused.value)


# -- command-line messages ---------------------------------------------------------------------


def test_a_malformed_setting_is_one_line_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("PGX_CDS_FHIR_TIMEOUT", "soon")
    assert main(["knowledge", "check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "PGX_CDS_FHIR_TIMEOUT" in err


def test_an_unusable_database_url_is_one_line_without_the_password(monkeypatch, capsys):
    monkeypatch.setenv("PGX_CDS_DATABASE_URL", "mysql://pgx:s3cret@db.example.org/pgx")
    assert main(["db", "current"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "s3cret" not in err
    assert "PGX_CDS_DATABASE_URL: mysql databases are not supported" in err
    with pytest.raises(ValidationError) as raised:  # nor when Settings is built in code
        Settings(database_url="postgresql+psycopg2://pgx:s3cret@db.example.org/pgx")
    assert "s3cret" not in str(raised.value)


def test_a_missing_postgresql_driver_is_named(monkeypatch, capsys):
    from importlib import util

    real_find_spec = util.find_spec
    monkeypatch.setattr(
        util, "find_spec", lambda name, *a: None if name == "psycopg" else real_find_spec(name, *a)
    )
    monkeypatch.setenv("PGX_CDS_DATABASE_URL", "postgresql+psycopg://pgx:s3cret@db/pgx")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "PGX_CDS_DATABASE_URL: the postgresql driver psycopg is not installed" in err
    assert "pgx-pain-cds[postgres]" in err and "s3cret" not in err
    monkeypatch.setattr(util, "find_spec", real_find_spec)
    assert Settings(database_url="postgresql+psycopg://pgx:s3cret@db/pgx").database_url


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"public_url": "cds.example.org"}, "'cds.example.org' is not an http(s) URL"),
        ({"public_url": "https://cds.example.org?x=1"}, "is not an http(s) URL"),
        ({"fhir_servers": "https://a.org/fhir, a.org/fhir"}, "FHIR server 'a.org/fhir' is not"),
        ({"fhir_servers": "ftp://a.org/fhir"}, "FHIR server 'ftp://a.org/fhir' is not"),
        ({"issuer_fhir_servers": {"https://a.org": ["a.org/fhir"]}}, "'a.org/fhir' of issuer"),
        (
            {
                "trusted_issuers": {"https://a.org": "file:///etc/jwks.json"},
                "public_url": "https://cds.example.org",
                "fhir_servers": "https://a.org/fhir",
            },
            "key set (JWKS) URL 'file:///etc/jwks.json' of issuer 'https://a.org' is not",
        ),
    ],
)
def test_urls_that_can_never_work_are_refused(settings, says):
    with pytest.raises(ValidationError, match=re.escape(says)):
        Settings(**settings)


def test_working_urls_are_accepted():
    Settings(
        public_url="http://localhost:8080/",
        fhir_servers="https://ehr.example.org/fhir, http://127.0.0.1:8103/fhir",
        trusted_issuers={"https://ehr.example.org": "https://ehr.example.org/jwks.json"},
        issuer_fhir_servers={"https://ehr.example.org": ["https://ehr.example.org/r4"]},
        hash_key=HASH_KEY,
    )


def test_a_pretest_drug_without_a_pre_test_card_stops_the_start(tmp_path, monkeypatch, capsys):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", pretest_drugs="codeine,aspirinx"
    )
    with pytest.raises(KnowledgeError, match=r"PGX_CDS_PRETEST_DRUGS: 'aspirinx': no pre-test"):
        create_app(settings)
    monkeypatch.setenv("PGX_CDS_PRETEST_DRUGS", "Codeine, ibuprofen")  # a drug, but no test card
    assert main(["knowledge", "check"]) == 1
    assert "PGX_CDS_PRETEST_DRUGS: 'ibuprofen'" in capsys.readouterr().err
    monkeypatch.setenv("PGX_CDS_PRETEST_DRUGS", "Codeine, tramadol")
    assert main(["knowledge", "check"]) == 0


def test_knowledge_list_failure_says_list(tmp_path, capsys):
    assert main(["knowledge", "list", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("knowledge list FAILED")


def test_explain_asks_for_a_fhir_server_for_the_no_prefetch_example(capsys):
    from cds_service.settings import shipped_dir

    path = shipped_dir("sandbox") / "requests" / "no-prefetch"
    requests_without_prefetch = sorted(path.glob("*.json"))
    assert len(requests_without_prefetch) == 2  # order-select and patient-view
    for request in requests_without_prefetch:
        assert main(["explain", str(request)]) == 2
        assert "--fhir" in capsys.readouterr().err


def test_concurrent_sqlite_migrations_take_turns(tmp_path):
    """Without the lock file, the second CREATE TABLE alembic_version fails."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    assert upgrade_concurrently(url) == [schema.head()] * 4


def test_default_workers_follow_the_container_cpu_limit(monkeypatch):
    from pathlib import Path

    from cds_service import settings as settings_module

    real_read = Path.read_text

    def cpu_max(self: Path, *args, **kwargs) -> str:
        if str(self) == "/sys/fs/cgroup/cpu.max":
            return "150000 100000\n"  # 1.5 CPUs
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.setattr(Path, "read_text", cpu_max)
    assert settings_module.default_workers() == 2


def _in_a_forked_child(work) -> str:
    """What ``work()`` returns in a child forked from this process (as gunicorn forks)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once, running no pytest teardown
        try:
            os.write(write, str(work()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        poller = select.poll()  # (not select(): a long test run holds descriptors past 1024)
        poller.register(answer, select.POLLIN)
        if not poller.poll(10_000):  # a child stuck on a lock it inherited
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child did not answer within 10 s")
        got = answer.read()
    os.waitpid(pid, 0)
    return got


def test_forked_workers_make_request_ids_of_their_own():
    child = _in_a_forked_child(lambda: request_id_from(None))
    mine = request_id_from(None)
    assert re.fullmatch(r"[0-9a-f]{32}", child) and re.fullmatch(r"[0-9a-f]{32}", mine)
    assert child != mine  # without a reseed at fork, both would draw the same next id


def test_metrics_in_a_forked_worker_go_by_its_own_process_id():
    """Multi-process metrics write to a file per process id: a child that kept its parent's
    id would write into the parent's file (and two workers into one)."""
    pid = metrics._ProcessId()
    assert pid() == os.getpid()
    seen, actual = _in_a_forked_child(lambda: f"{pid()} {os.getpid()}").split()
    assert seen == actual != str(os.getpid())


def test_multi_process_metrics_of_a_forked_worker_are_its_own_and_all_are_counted(tmp_path):
    """As under ``pgx-cds serve``: PROMETHEUS_MULTIPROC_DIR set before the metrics are
    made, a worker forked after them; each process writes its own file and /metrics adds
    them up."""
    script = """
import os, sys
from cds_service.web import metrics
metrics.record_request("hook", "pgx-order-select", 200, 0.01)  # the parent, before the fork
pid = os.fork()
if pid == 0:
    metrics.record_request("hook", "pgx-order-select", 200, 0.01)
    os._exit(0)
os.waitpid(pid, 0)
metrics.record_request("hook", "pgx-order-select", 200, 0.01)
text = metrics.exposition()[0].decode()
line = next(l for l in text.splitlines() if l.startswith("pgx_cds_http_requests_total{"))
print(line.rsplit(" ", 1)[1], len(os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])))
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    total, files = done.stdout.split()
    assert float(total) == 3.0
    assert int(files) >= 4  # a counter file and a histogram file for each of the two processes
