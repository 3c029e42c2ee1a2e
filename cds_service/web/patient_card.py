"""The SMART Health Card issuer's key set at ``/.well-known/jwks.json``.

A verifier of a patient's card (``pgx-cds summary --verify``, a wallet app, another
hospital) fetches ``<iss>/.well-known/jwks.json``: the public keys only (never a private
part), every kept key listed so that cards signed with an older key still verify, and
readable from any web page (``Access-Control-Allow-Origin: *``, as the SMART Health Cards
IG requires; ``ResponseHeaders`` sets it for this path whatever ``PGX_CDS_CORS_ORIGINS``
says).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..settings import Settings
from ..summary.keys import Issuer

log = logging.getLogger("cds_service")

JWKS_PATH = "/.well-known/jwks.json"


def register(app: Flask, settings: Settings, database: Engine) -> Issuer:
    """Serve the key set; returns the issuer's keys (a bad ``PGX_CDS_SHC_KEY`` file raises
    ``ShcKeyError`` here, at start)."""
    issuer = Issuer(settings.shc_key, database)

    @app.get(JWKS_PATH)
    def _jwks() -> tuple[Response, int]:
        try:
            body = issuer.jwks()
        except SQLAlchemyError as exc:
            log.warning("key set: database unavailable (%s)", type(exc).__name__)
            response = jsonify({"error": "the key set is unavailable; try again later"})
            response.headers["Retry-After"] = "5"
            return response, 503
        response = jsonify(body)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response, 200

    return issuer
