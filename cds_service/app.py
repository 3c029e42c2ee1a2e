"""HTTP layer: CDS Hooks endpoints, CORS, health checks and JSON errors."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .auth import JwtVerifier
from .errors import ClientError
from .feedback import FeedbackStore
from .http_guard import forbidden_host, guarded_session
from .knowledge import Knowledge
from .logsafe import clean, patient_ref, quiet_http_libraries
from .pipeline import Engine
from .replay import ReplayCache
from .request import HookRequest, parse_hook_request, parse_json
from .services import SERVICES, discovery
from .settings import Settings, get_settings

log = logging.getLogger("cds_service")

CORS_HEADERS = "Authorization, Content-Type, Accept"
MAX_BODY = 5 * 1024 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    settings.check_fhir_allowlist()  # also for settings built in code (model_copy skips it)
    # Validated now: a bad file stops start-up rather than giving a wrong card later.
    knowledge = Knowledge(settings.knowledge_dir, settings.site_codes)
    quiet_http_libraries()  # urllib3 at DEBUG logs FHIR URLs, and so patient ids
    # FHIR reads go through a session that never connects to link-local/metadata addresses.
    engine = Engine(knowledge, settings, session=guarded_session())
    store = FeedbackStore(settings.database_url)
    discovery_body = discovery(knowledge)
    allowed_origins = {o.strip() for o in settings.cors_origins.split(",") if o.strip()}
    # Seen client JWTs live in the service's database: shared by replicas, kept on restart.
    verifier = JwtVerifier(settings.trusted_issuers, replay=ReplayCache(store.engine))
    if not verifier.enabled:
        log.warning("no PGX_CDS_TRUSTED_ISSUERS: CDS clients are not authenticated")

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["pgx"] = {
        "engine": engine,
        "store": store,
        "knowledge": knowledge,
        "verifier": verifier,
    }

    # -- CORS and request logging ------------------------------------------------------

    @app.before_request
    def _start() -> Response | None:
        g.started = time.perf_counter()
        if request.method == "OPTIONS":
            return Response(status=204)
        if verifier.enabled and request.path.startswith("/cds-services"):
            # The audience is the public URL (required with trusted issuers), never the Host
            # header, which the caller chooses.
            public = (settings.public_url or "").rstrip("/")
            claims = verifier.verify(request.headers.get("Authorization"), public + request.path)
            g.client_issuer = claims["iss"]
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if "*" in allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin and origin in allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "86400"
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        # Method, route and status only: never bodies, identifiers or tokens; and escaped
        # (a %0A in the path must not forge a log line).
        log.info(
            "%s %s -> %s in %.1f ms",
            clean(request.method, 10),
            clean(request.url_rule or request.path.split("/")[1], 80),
            response.status_code,
            elapsed,
        )
        return response

    # -- errors: always JSON, never a stack trace ---------------------------------------

    @app.errorhandler(ClientError)
    def _client_error(exc: ClientError) -> tuple[Response, int]:
        log.info("client error %s: %s", exc.status, clean(exc.message))
        response = jsonify(exc.body())
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response, exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        messages = {
            404: "no such endpoint; see GET /cds-services",
            405: f"method {request.method} is not allowed here",
            413: f"the request body is larger than {MAX_BODY // (1024 * 1024)} MB",
        }
        code = exc.code or 500
        return jsonify({"error": messages.get(code, exc.description or exc.name)}), code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.error(
            "unexpected error handling %s %s: %s",
            clean(request.method, 10),
            clean(request.url_rule, 80),
            type(exc).__name__,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        return jsonify({"error": "internal error; the service could not process this request"}), 500

    # -- CDS Hooks ----------------------------------------------------------------------

    @app.get("/cds-services")
    def _discovery() -> Response:
        return jsonify(discovery_body)

    @app.post("/cds-services/<service_id>")
    def _call(service_id: str) -> Response:
        service = _service(service_id)
        hook_request = parse_hook_request(parse_json(request.get_data()), service.hook)
        _check_fhir_server(hook_request, settings, g.get("client_issuer"))
        body, trace = engine.evaluate(hook_request)
        trace.log(log)
        log.info(
            "%s: %d card(s) for %s",
            service.id,  # ours, not the caller's
            len(body["cards"]),
            patient_ref(hook_request.patient_id),  # opaque: correlates without naming
        )
        return jsonify(body)

    @app.post("/cds-services/<service_id>/feedback")
    def _feedback(service_id: str) -> Response:
        _service(service_id)
        count = store.store(service_id, parse_json(request.get_data()))
        log.info("%s: stored %d feedback item(s)", service_id, count)
        return jsonify({"stored": count})

    # -- operations ---------------------------------------------------------------------

    @app.get("/healthz")
    def _health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def _ready() -> tuple[Response, int]:
        # The database holds feedback and seen client JWTs; hook calls work without it (see
        # README, Security and hardening). So a database outage is "degraded", still 200: it
        # must not take every replica out of the load balancer. Knowledge is loaded at start.
        checks: dict[str, Any] = {"knowledge": knowledge.version}
        try:
            store.ping()
            checks["database"] = "ok"
        except Exception as exc:  # report, don't crash: the load balancer asks often
            log.warning("readiness: database unavailable (%s)", type(exc).__name__)
            checks["database"] = "unavailable"
            return jsonify({"status": "degraded", **checks}), 200
        return jsonify({"status": "ok", **checks}), 200

    return app


def _check_fhir_server(hook_request: HookRequest, settings: Settings, issuer: str | None) -> None:
    """The request's fhirServer is one we may send the EHR's token to (403 otherwise)."""
    url = hook_request.fhirServer
    if not url:
        return
    host = urlsplit(url).hostname or ""
    if forbidden_host(host) or not settings.fhir_server_allowed(url, issuer):
        log.info("refused fhirServer host %s", clean(host, 100))
        raise ClientError(
            "the request's fhirServer is not one this service may query (PGX_CDS_FHIR_SERVERS)",
            status=403,
        )


def _service(service_id: str) -> Any:
    service = SERVICES.get(service_id)
    if service is None:
        raise ClientError(f"unknown service '{service_id}'; see GET /cds-services", status=404)
    return service
