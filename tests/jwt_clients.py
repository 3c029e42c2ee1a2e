"""Signed client JWTs and an app that trusts their issuer, for the tests of client
authentication (``web/test_jwt_hardening.py``, ``store/test_replay.py``, ``web/test_logs.py``)."""

from __future__ import annotations

import json
import time
import uuid

import jwt
from builders import APAP_CODEINE, HASH_KEY, hook_request, med_order, phenotype_obs, with_results
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr

from cds_service.web.app import create_app

ISSUER = "https://ehr.example.org"
JKU = "https://ehr.example.org/.well-known/jwks.json"
BASE = "http://localhost"
SERVICE_URL = f"{BASE}/cds-services/pgx-order-select"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())


def rsa_jwks(alg: str | None = "RS384") -> dict:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    return {"keys": [{**public, "kid": "rsa", **({"alg": alg} if alg else {})}]}


def ec_jwks() -> dict:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key()))
    return {"keys": [{**public, "kid": "ec", "alg": "ES384"}]}


def token(*, alg="RS384", key=RSA_KEY, kid="rsa", iss=ISSUER, **claims) -> str:
    now = int(time.time())
    body = {"iss": iss, "aud": SERVICE_URL, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    body.update(claims)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def make_client(settings, jwks_url=JKU):
    app = create_app(
        settings.model_copy(
            update={
                "trusted_issuers": {ISSUER: jwks_url},
                "public_url": BASE,
                "fhir_servers": "https://ehr.example.org/fhir",
                "hash_key": SecretStr(HASH_KEY),
            }
        )
    )
    return app.test_client()


def post(client, authorization: str | None):
    body = hook_request(
        "order-select",
        [med_order(APAP_CODEINE)],
        prefetch=with_results(phenotype_obs("Poor Metabolizer")),
    )
    headers = {"Authorization": authorization} if authorization else {}
    return client.post("/cds-services/pgx-order-select", json=body, headers=headers)
