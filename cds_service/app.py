"""HTTP layer: CDS Hooks endpoints, CORS, health checks and JSON errors."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import metrics, schema
from .auth import JwtVerifier
from .errors import ClientError
from .feedback import FeedbackStore
from .logs import configure_logging, request_id_from
from .pipeline import Engine
from .request import parse_hook_request, parse_json
from .services import SERVICES, discovery
from .settings import Settings, get_settings
from .site_config import load

log = logging.getLogger("cds_service")

CORS_HEADERS = "Authorization, Content-Type, Accept"
MAX_BODY = 5 * 1024 * 1024
#: Flask endpoint -> the ``endpoint`` label of the request metrics.
ENDPOINTS = {
    "_discovery": "discovery",
    "_call": "hook",
    "_feedback": "feedback",
    "_health": "healthz",
    "_ready": "readyz",
    "_metrics": "metrics",
}


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    # Validated now: a bad file stops start-up rather than giving a wrong card later.
    knowledge, site = load(settings)  # the knowledge and the site file (PGX_CDS_SITE_CONFIG)
    store = FeedbackStore(settings.database_url, settings.hash_key)
    if settings.migrate_on_start:
        schema.upgrade(store.engine)
    else:
        schema.require_current(store.engine)
    engine = Engine(knowledge, settings, card_log=store.card_log, site=site)
    metrics.meter_session(engine.session)
    metrics.KNOWLEDGE.labels(knowledge.version).set(1)
    recommendation_by_id = {r.id: r for r in knowledge.recommendations}
    discovery_body = discovery(knowledge, site.active_hooks())
    allowed_origins = {o.strip() for o in settings.cors_origins.split(",") if o.strip()}
    verifier = JwtVerifier(settings.trusted_issuers)
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
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        if request.method == "OPTIONS":
            return Response(status=204)
        if verifier.enabled and request.path.startswith("/cds-services"):
            # The audience is the public URL (required with trusted issuers), never the Host
            # header, which the caller chooses.
            public = (settings.public_url or "").rstrip("/")
            verifier.verify(request.headers.get("Authorization"), public + request.path)
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
        response.headers["X-Request-ID"] = g.get("request_id", "")
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        elapsed = seconds * 1000
        rule = request.url_rule
        endpoint = ENDPOINTS.get(rule.endpoint, "other") if rule else "other"
        service_id = (request.view_args or {}).get("service_id", "")
        metrics.record_request(
            endpoint, service_id if service_id in SERVICES else "", response.status_code, seconds
        )
        # Method, route and status only: never bodies, identifiers or tokens.
        log.info(
            "%s %s -> %s in %.1f ms",
            request.method,
            request.url_rule or request.path.split("/")[1],
            response.status_code,
            elapsed,
        )
        return response

    # -- errors: always JSON, never a stack trace ---------------------------------------

    @app.errorhandler(ClientError)
    def _client_error(exc: ClientError) -> tuple[Response, int]:
        log.info("client error %s: %s", exc.status, exc.message)
        return jsonify(exc.body()), exc.status

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
            request.method,
            request.url_rule,
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
        hook_request = parse_hook_request(parse_json(_body()), service.hook)
        if service.hook == "patient-view":
            body, trace = engine.patient_view(hook_request)
        else:
            body, trace = engine.evaluate(hook_request, service_id=service.id)
        trace.log(log)
        log.info("%s: %d card(s)", service.id, len(body["cards"]))
        metrics.record_cards(body["cards"], recommendation_by_id)
        return jsonify(body)

    @app.post("/cds-services/<service_id>/feedback")
    def _feedback(service_id: str) -> Response:
        _service(service_id)
        feedback = parse_json(_body())
        count = store.store(service_id, feedback)
        log.info("%s: stored %d feedback item(s)", service_id, count)
        metrics.record_feedback(service_id, feedback)
        return jsonify({"stored": count})

    # -- operations ---------------------------------------------------------------------

    @app.get("/healthz")
    def _health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def _ready() -> tuple[Response, int]:
        checks: dict[str, Any] = {"knowledge": knowledge.version}
        degraded = [] if verifier.enabled else ["client authentication is off"]
        try:
            store.ping()
            checks["database"] = "ok"
        except Exception as exc:  # report, don't crash: the load balancer asks often
            # The exception's name goes to the log, not to whoever asks.
            log.warning("readiness: database unavailable (%s)", type(exc).__name__)
            checks["database"] = "unavailable"
            return jsonify({"status": "unavailable", **checks, "degraded": degraded}), 503
        status = "degraded" if degraded else "ok"
        return jsonify({"status": status, **checks, "degraded": degraded}), 200

    @app.get("/metrics")
    def _metrics() -> Response:
        text, content_type = metrics.exposition()
        return Response(text, content_type=content_type)

    return app


def _body() -> bytes:
    """The request body. Flask refuses a Content-Length over MAX_BODY before reading anything;
    a chunked body is read up to MAX_BODY, and if more follows it is refused (413), never
    silently cut short."""
    data = request.get_data()
    if request.content_length is None and len(data) >= MAX_BODY:
        request.stream.read(1)  # past the limit: werkzeug raises RequestEntityTooLarge
    return data


def _service(service_id: str) -> Any:
    service = SERVICES.get(service_id)
    if service is None:
        raise ClientError(f"unknown service '{service_id}'; see GET /cds-services", status=404)
    return service
