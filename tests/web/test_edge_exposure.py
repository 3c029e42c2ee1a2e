"""Issue 26, item 6: with client authentication on, nothing on the hook port answers without
a credential: /metrics moves to its own port (PGX_CDS_METRICS_PORT), no origin may be "*",
and private-network approval goes only to named origins (see also tests/web/test_app.py and
tests/integration/test_metrics_port.py)."""

from __future__ import annotations

import pytest
from builders import HASH_KEY
from pydantic import SecretStr, ValidationError

from cds_service.settings import Settings
from cds_service.web.app import create_app

ISSUER = "https://ehr.example.org"
AUTHENTICATED = {
    "trusted_issuers": {ISSUER: f"{ISSUER}/.well-known/jwks.json"},
    "public_url": "https://cds.example.org",
    "fhir_servers": f"{ISSUER}/fhir",
    "hash_key": SecretStr(HASH_KEY),
}


def authenticated(settings: Settings, **more) -> Settings:
    base = {k: v for k, v in settings.model_dump().items() if v is not None}
    return Settings(**{**base, **AUTHENTICATED, **more})


def test_metrics_are_not_on_the_hook_port_with_client_authentication(settings):
    client = create_app(authenticated(settings)).test_client()
    response = client.get("/metrics")
    assert response.status_code == 404
    assert "pgx_cds_" not in response.get_data(as_text=True)


def test_metrics_are_not_on_the_hook_port_when_they_have_their_own(settings):
    client = create_app(settings.model_copy(update={"metrics_port": 9464})).test_client()
    assert client.get("/metrics").status_code == 404


def test_without_authentication_metrics_stay_on_the_hook_port(client):
    assert "pgx_cds_" in client.get("/metrics").get_data(as_text=True)


def test_any_origin_is_refused_with_trusted_issuers(settings):
    with pytest.raises(ValidationError, match=r"PGX_CDS_CORS_ORIGINS=\* is refused"):
        authenticated(settings, cors_origins="*")
    with pytest.raises(ValidationError, match=r"PGX_CDS_CORS_ORIGINS=\* is refused"):
        authenticated(settings, cors_origins="https://ehr.example.org, *")


def test_with_trusted_issuers_and_no_origins_no_page_may_call(settings):
    client = create_app(authenticated(settings)).test_client()
    response = client.options(
        "/cds-services/pgx-order-select",
        headers={"Origin": "https://attacker.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_named_origins_are_allowed_with_trusted_issuers(settings):
    named = authenticated(settings, cors_origins="https://ehr.example.org")
    response = (
        create_app(named)
        .test_client()
        .options(
            "/cds-services/pgx-order-select",
            headers={"Origin": "https://ehr.example.org", "Access-Control-Request-Method": "POST"},
        )
    )
    assert response.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"


def test_the_metrics_port_must_not_be_the_hook_port():
    with pytest.raises(ValidationError, match="METRICS_PORT must differ"):
        Settings(port=8080, metrics_port=8080)
