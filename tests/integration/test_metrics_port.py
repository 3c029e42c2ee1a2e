"""Issue 26, item 6: under ``pgx-cds serve`` with client authentication, /metrics is not on
the hook port (it needs no credential) but on PGX_CDS_METRICS_PORT, summed over the
workers, where Prometheus reads it."""

from __future__ import annotations

import requests
from builders import HASH_KEY
from serving import clean_env, free_port
from serving import start_service as start


def _count(text: str, endpoint: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("pgx_cds_http_requests_total{") and f'endpoint="{endpoint}"' in line
    )


def test_metrics_have_their_own_port_and_not_the_hook_ports(tmp_path):
    metrics_port = free_port()
    env = clean_env(
        PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PGX_CDS_TRUSTED_ISSUERS='{"https://ehr.example.org": "https://ehr.example.org/jwks"}',
        PGX_CDS_PUBLIC_URL="https://cds.example.org",
        PGX_CDS_FHIR_SERVERS="https://ehr.example.org/fhir",
        PGX_CDS_HASH_KEY=HASH_KEY,
        PGX_CDS_METRICS_PORT=str(metrics_port),
    )
    service = start(env, "--workers", "2")
    try:
        assert requests.get(f"{service.url}/metrics", timeout=5).status_code == 404
        for _ in range(6):  # spread over both workers: each is a 401 (no client JWT)
            assert requests.get(f"{service.url}/cds-services", timeout=5).status_code == 401
        scraped = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scraped.status_code == 200
        assert _count(scraped.text, "discovery") == 6
    finally:
        service.stop()


def test_a_metrics_port_in_use_stops_the_start_in_one_line(tmp_path):
    import socket
    import subprocess

    from serving import PGX_CDS

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = clean_env(
            PGX_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
            PGX_CDS_METRICS_PORT=str(busy.getsockname()[1]),
        )
        result = subprocess.run(
            [PGX_CDS, "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "already in use" in result.stderr and "Traceback" not in result.stderr
