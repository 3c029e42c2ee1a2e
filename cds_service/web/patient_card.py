"""The patient's card at the edge: the SMART Health Card issuer's key set at
``/.well-known/jwks.json``, and the SMART on FHIR app that shows the summary page inside the
EHR (``/smart/launch``, ``/smart/callback``; ``summary.smart``), which the patient-view card
links to (``type: smart``).

A verifier of a patient's card (``pgx-cds summary --verify``, a wallet app, another
hospital) fetches ``<iss>/.well-known/jwks.json``: the public keys only (never a private
part), every kept key listed so that cards signed with an older key still verify, and
readable from any web page (``Access-Control-Allow-Origin: *``, as the SMART Health Cards
IG requires; ``ResponseHeaders`` sets it for this path whatever ``PGX_CDS_CORS_ORIGINS``
says).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, redirect, request
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response as WerkzeugResponse

from ..core.hook_request import parse_hook_request
from ..fhir.patient_data import FhirUnavailable
from ..pipeline import Engine as HookEngine
from ..settings import Settings, insecure_http
from ..summary import smart
from ..summary.build import HOOK, summarise
from ..summary.document import document
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


LAUNCH_PATH = "/smart/launch"
CALLBACK_PATH = "/smart/callback"


def app_link(settings: Settings) -> dict[str, str] | None:
    """The patient-view card's link to the SMART app (None: the app is not set up)."""
    if not (settings.smart_client_id and settings.public_url):
        return None
    return {
        "label": "Patient's PGx card (printable, with a SMART Health Card)",
        "url": settings.public_url.rstrip("/") + LAUNCH_PATH,
        "type": "smart",
    }


def with_app_link(body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The patient-view answer with the app's link on its card (when there is one)."""
    link = app_link(settings)
    if link is not None:
        for card in body.get("cards") or []:
            card["links"] = [*(card.get("links") or []), link]
    return body


def register_app(app: Flask, settings: Settings, engine: Any, issuer: Issuer) -> None:
    """The SMART on FHIR EHR launch of the summary page (``summary.smart``); only when the
    site set ``PGX_CDS_SMART_CLIENT_ID`` and ``PGX_CDS_PUBLIC_URL``."""
    if app_link(settings) is None:
        return
    public = str(settings.public_url).rstrip("/")
    redirect_uri = public + CALLBACK_PATH
    # the page is not a hook call: judged by an engine of its own (the same knowledge, site
    # and connections) that neither counts calls nor logs cards
    engine = HookEngine(
        engine.knowledge, settings, session=engine.session, pool=engine.pool, site=engine.site
    )
    secure = not public.startswith("http://")
    client_id = str(settings.smart_client_id)

    def secret() -> bytes:
        return issuer.derived_secret(b"pgx-cds smart launch cookie")

    def refused(exc: smart.LaunchError) -> tuple[Response, int]:
        log.info("SMART launch refused: %s", exc)  # (our words: never a code or token)
        return jsonify({"error": str(exc)}), exc.status

    @app.get(LAUNCH_PATH)
    def _smart_launch() -> WerkzeugResponse | tuple[Response, int]:
        iss, launch = request.args.get("iss", ""), request.args.get("launch", "")
        if not iss or not launch:
            return refused(smart.LaunchError("an EHR launch needs 'iss' and 'launch'"))
        if insecure_http(iss) and not settings.allow_insecure_http:
            return refused(smart.LaunchError("'iss' must be an https:// FHIR server"))
        probe = {"hook": HOOK, "hookInstance": "smart-launch", "context": {"patientId": "-"}}
        hook_request = parse_hook_request({**probe, "fhirServer": iss}, HOOK)
        engine.check_fhir_server(hook_request)  # (403 for a server we may not read)
        try:
            target, cookie = smart.start(
                engine.session,
                str(hook_request.fhirServer),
                launch,
                client_id=client_id,
                redirect_uri=redirect_uri,
                secret=secret(),
            )
        except smart.LaunchError as exc:
            return refused(exc)
        response = redirect(target, code=302)
        response.set_cookie(
            smart.COOKIE,
            cookie,
            max_age=smart.COOKIE_SECONDS,
            secure=secure,
            httponly=True,
            samesite="Lax",
            path="/smart/",
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get(CALLBACK_PATH)
    def _smart_callback() -> Response | tuple[Response, int]:
        try:
            if request.args.get("error"):
                raise smart.LaunchError("the EHR did not authorise the app", 403)
            pending = smart.unseal(request.cookies.get(smart.COOKIE), secret())
            token, patient = smart.finish(
                engine.session,
                pending,
                request.args.get("code", ""),
                request.args.get("state", ""),
                client_id=client_id,
                redirect_uri=redirect_uri,
            )
            made_summary, _ = summarise(engine, pending.iss, token, patient)
        except smart.LaunchError as exc:
            return refused(exc)
        except FhirUnavailable:
            return refused(smart.LaunchError("the patient could not be read", 502))
        made = document(made_summary, engine.knowledge, issuer, settings.public_url)
        response = Response(made.html, content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors *"
        )
        response.headers["Referrer-Policy"] = "no-referrer"
        response.delete_cookie(smart.COOKIE, path="/smart/", secure=secure, samesite="Lax")
        return response
