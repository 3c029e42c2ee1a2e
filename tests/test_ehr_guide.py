"""docs/ehr-registration.md works as written: its prefetch block is the service's own, word for
word, and its example tokens of Epic's and Oracle Health's shape, signed with a test key and
with their key set served at the URL the guide configures, are accepted by the service with the
guide's settings (feedback included, in Epic's shape)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import responses
from builders import APAP_CODEINE, HASH_KEY, hook_request, med_order, phenotype_obs, with_results
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from cds_service.cli import main
from cds_service.fhir.queries import prefetch_text
from cds_service.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "ehr-registration.md"
TEXT = GUIDE.read_text(encoding="utf-8")
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _example(vendor: str, part: str) -> dict[str, Any]:
    found = re.search(
        rf"<!-- example token: {vendor} {part} -->\n```json\n(.*?)\n```", TEXT, re.DOTALL
    )
    assert found, f"the guide has no {vendor} {part}"
    return json.loads(found.group(1))


def _settings_of(section: str) -> dict[str, str]:
    """The ``env`` block of a vendor's "What you set here"."""
    part = TEXT[TEXT.index(f"## {section}") :]
    block = re.search(r"```env\n(.*?)\n```", part, re.DOTALL)
    assert block
    return dict(line.split("=", 1) for line in block.group(1).splitlines())


def _app(settings, vendor_settings: dict[str, str], tmp_path: Path, site: dict | None = None):
    update: dict[str, Any] = {
        "public_url": vendor_settings["PGX_CDS_PUBLIC_URL"],
        "trusted_issuers": json.loads(vendor_settings["PGX_CDS_TRUSTED_ISSUERS"]),
        "issuer_fhir_servers": json.loads(vendor_settings["PGX_CDS_ISSUER_FHIR_SERVERS"]),
        "hash_key": SecretStr(HASH_KEY),  # (the guide's is a placeholder for the vault's)
    }
    if site is not None:
        path = tmp_path / "site.json"
        path.write_text(json.dumps(site))
        update["site_config"] = path
    return create_app(settings.model_copy(update=update)).test_client()


def _signed(header: dict[str, Any], payload: dict[str, Any], **now_claims: Any) -> str:
    """The example, its times moved to now with the same offsets, signed with the test key."""
    now = int(time.time())
    shift = now - payload["iat"]
    claims = {
        **payload,
        **{k: payload[k] + shift for k in ("iat", "exp", "nbf") if k in payload},
        "jti": str(uuid.uuid4()),  # (each use needs a new one)
        **now_claims,
    }
    extra = {k: v for k, v in header.items() if k not in ("alg", "typ")}
    return jwt.encode(claims, KEY, algorithm=header["alg"], headers={**extra, "typ": "JWT"})


def _jwks(kid: str, alg: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    return {"keys": [{**public, "kid": kid, "alg": alg, "use": "sig"}]}


def test_the_guides_prefetch_block_is_the_services_own():
    block = re.search(
        r"<!-- generated: prefetch [^>]*-->\n```text\n(.*?)```\n<!-- end generated -->",
        TEXT,
        re.DOTALL,
    )
    assert block, "the generated prefetch block is missing"
    from cds_service.knowledge.loader import Knowledge
    from cds_service.settings import default_knowledge_dir

    expected = prefetch_text(Knowledge(default_knowledge_dir()))
    assert block.group(1) == expected, "run python scripts/build_ehr_guide.py"


def test_pgx_cds_knowledge_prefetch_prints_the_same_with_the_sites_codes(
    tmp_path, monkeypatch, capsys
):
    assert main(["knowledge", "prefetch"]) == 0
    plain = capsys.readouterr().out
    assert "Prefetch Property Name: genomicResults\nFHIR Query: Observation?patient=" in plain
    site = tmp_path / "site.json"
    site.write_text(
        json.dumps(
            {"codes": {"http://lab.example.org|PGX-2D6": {"kind": "phenotype", "gene": "CYP2D6"}}}
        )
    )
    monkeypatch.setenv("PGX_CDS_SITE_CONFIG", str(site))
    assert main(["knowledge", "prefetch"]) == 0
    assert "http://lab.example.org|PGX-2D6" in capsys.readouterr().out


def test_the_readme_sends_hospital_it_to_the_guide():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/ehr-registration.md)" in readme


def test_the_epic_example_has_epics_documented_shape():
    header, payload = _example("epic", "header"), _example("epic", "payload")
    assert header["alg"] == "RS384" and header["typ"] == "JWT"
    assert header["jku"].endswith("/api/epic/2019/Security/Open/PublicKeys/530013/530013")
    assert "+" in header["kid"] and header["kid"].endswith("=")
    assert payload["nbf"] == payload["iat"] - 300
    assert payload["exp"] - payload["iat"] == 900
    assert payload["iss"].endswith("/api/FHIR/R4")
    settings = _settings_of("Epic")
    assert json.loads(settings["PGX_CDS_TRUSTED_ISSUERS"]) == {payload["iss"]: header["jku"]}
    assert payload["aud"] == settings["PGX_CDS_PUBLIC_URL"] + "/cds-services/pgx-order-select"


@responses.activate
def test_the_epic_example_token_passes_against_the_service(settings, tmp_path):
    header, payload = _example("epic", "header"), _example("epic", "payload")
    responses.get(header["jku"], json=_jwks(header["kid"], header["alg"]))
    client = _app(settings, _settings_of("Epic"), tmp_path, site={"ehr": "epic"})
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE, order_id="epic-1")],
        prefetch=with_results(phenotype_obs("Ultrarapid Metabolizer")),
        fhir_server=payload["iss"],  # Epic always sends its FHIR base
        token="epic-access-token",
    )
    answer = client.post(
        "/cds-services/pgx-order-select",
        json=body,
        headers={"Authorization": f"Bearer {_signed(header, payload)}"},
    )
    assert answer.status_code == 200, answer.get_json()
    (card,) = answer.get_json()["cards"]
    assert card["selectionBehavior"] == "any"
    assert all(len(s["actions"]) == 1 for s in card["suggestions"])

    # Epic posts feedback to the service URL + /feedback, aud unchanged, reasons plural
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2024-02-16T19:44:04Z",
                "overrideReasons": {
                    "reason": {
                        "code": "tolerated-before",
                        "system": "urn:pgx-pain-cds:override-reason",
                    },
                    "userComment": "took it for years",
                },
            }
        ]
    }
    stored = client.post(
        "/cds-services/pgx-order-select/feedback",
        json=feedback,
        headers={"Authorization": f"Bearer {_signed(header, payload)}"},
    )
    assert stored.status_code == 200 and stored.get_json() == {"stored": 1}
    store = client.application.extensions["pgx"].store
    (item,) = store.all()
    assert item["override_reason_code"] == "tolerated-before"
    assert item["override_comment"] == "took it for years"


@responses.activate
def test_a_token_for_another_service_is_refused_as_epic_would_see_it(settings, tmp_path):
    header, payload = _example("epic", "header"), _example("epic", "payload")
    responses.get(header["jku"], json=_jwks(header["kid"], header["alg"]))
    client = _app(settings, _settings_of("Epic"), tmp_path)
    body = hook_request("order-sign", [med_order(APAP_CODEINE)], prefetch=with_results())
    answer = client.post(  # one aud for every service: only the one it names passes
        "/cds-services/pgx-order-sign",
        json=body,
        headers={"Authorization": f"Bearer {_signed(header, payload)}"},
    )
    assert answer.status_code == 401 and "aud" in answer.get_json()["error"].lower()


@responses.activate
def test_the_oracle_example_token_passes_against_the_service(settings, tmp_path):
    header, payload = _example("oracle", "header"), _example("oracle", "payload")
    oracle = _settings_of("Oracle Health")
    (jwks_url,) = json.loads(oracle["PGX_CDS_TRUSTED_ISSUERS"]).values()
    assert (payload["iss"], jwks_url) == (
        "https://cds-hooks.cerner.com",
        "https://authorization.cerner.com/jwk",
    )
    responses.get(jwks_url, json=_jwks(header["kid"], header["alg"]))
    client = _app(settings, oracle, tmp_path)
    body = hook_request(
        "patient-view", [], prefetch=with_results(phenotype_obs("Poor Metabolizer"))
    )
    body["context"].pop("draftOrders")
    answer = client.post(
        "/cds-services/pgx-patient-view",
        json=body,
        headers={"Authorization": f"Bearer {_signed(header, payload)}"},
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["cards"][0]["summary"].startswith("PGx for pain")


@pytest.mark.parametrize("vendor", ["epic", "oracle"])
def test_the_examples_are_accepted_only_with_their_own_key(settings, tmp_path, vendor):
    header, payload = _example(vendor, "header"), _example(vendor, "payload")
    section = {"epic": "Epic", "oracle": "Oracle Health"}[vendor]
    vendor_settings = _settings_of(section)
    (jwks_url,) = json.loads(vendor_settings["PGX_CDS_TRUSTED_ISSUERS"]).values()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other.public_key()))
    with responses.RequestsMock() as mocked:
        mocked.get(
            jwks_url, json={"keys": [{**public, "kid": header["kid"], "alg": header["alg"]}]}
        )
        client = _app(settings, vendor_settings, tmp_path)
        service = payload["aud"].rsplit("/", 1)[1]
        hook = {"pgx-order-select": "order-select", "pgx-patient-view": "patient-view"}[service]
        body = hook_request(hook, [], prefetch=with_results())
        answer = client.post(
            f"/cds-services/{service}",
            json=body,
            headers={"Authorization": f"Bearer {_signed(header, payload)}"},
        )
    assert answer.status_code == 401
