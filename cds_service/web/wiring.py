"""What a running service is made of, built once at start from its settings (the web edge's
wiring): the knowledge and site policy, the card log and feedback store (and the schema brought
up to date), the engine, the client verifier and the metrics that describe the build.
``create_app`` (app.py) puts the result on the Flask app, typed: ``services(app)``."""

from __future__ import annotations

import contextlib
import logging
import platform
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from .. import __version__
from ..core.known_json import KnownValues
from ..core.logsafe import quiet_http_libraries, set_ref_key
from ..fhir.patient_data import GENOMIC_RESULTS
from ..fhir.session import guarded_session
from ..governance.labels import CardLabels
from ..governance.site_config import SiteConfig, load
from ..knowledge.loader import Knowledge
from ..pipeline import Engine
from ..settings import Settings, describe_database
from ..store import schema
from ..store.call_counts import CallCounts
from ..store.feedback import FeedbackStore
from ..store.replay import ReplayCache
from . import metrics
from .auth import JwtVerifier
from .discovery import discovery
from .logs import configure_logging

log = logging.getLogger("cds_service")

#: The longest the start waits for the database to read (or make) the service's key: a new
#: connection to a remote database can take seconds; a hook call waits far less.
START_DB_SECONDS = 10.0


@dataclass(frozen=True)
class Services:
    """The parts of one running service (one per app)."""

    settings: Settings
    knowledge: Knowledge
    site: SiteConfig
    #: the site policy as the start-up line and /readyz show it (mode, file, hash, EHR)
    policy: dict[str, Any]
    engine: Engine
    store: FeedbackStore
    verifier: JwtVerifier
    labels: CardLabels  # the metrics' labels of a card
    discovery_body: dict[str, Any]
    #: the prefetched genomic results' bytes seen twice: then recognised, not read again
    known_results: KnownValues

    def close(self) -> None:
        """Write what is waiting (card log, call counts) and let the background threads and
        database connections go. A server process never needs it (exit does the writing); a
        process that makes many apps (the tests) does. The app still answers after, starting
        them again."""
        self.engine.close()
        self.verifier.replay.close()
        self.store.close()


def services(app: Flask) -> Services:
    """The services of an app made by ``create_app``."""
    found = app.extensions.get("pgx")
    if not isinstance(found, Services):
        raise RuntimeError("not an app made by cds_service.web.app.create_app")
    return found


def wire(settings: Settings) -> Services:
    """Everything the service needs, from ``settings`` (checked again here: settings built in
    code skip the checks). A bad knowledge or site file stops the start (ValueError)."""
    settings.check()  # also for settings built in code (model_copy skips the checks)
    configure_logging(settings.log_level, settings.log_format)
    quiet_http_libraries()  # urllib3 at DEBUG logs FHIR URLs, and so patient ids
    if settings.log_level == "DEBUG":
        log.warning(
            "PGX_CDS_LOG_LEVEL=DEBUG logs each call's decision trace: the drugs ordered and "
            "the patient's genomic results (phenotypes, diplotypes, HLA typing), without "
            "patient ids, record ids, free text or tokens; for troubleshooting with test "
            "patients, not for production"
        )
    # Validated now: a bad file stops start-up rather than giving a wrong card later.
    knowledge, site = load(settings)  # the knowledge and the site file (PGX_CDS_SITE_CONFIG)
    policy = site.describe()
    log.info(
        "site policy: %s (file %s, sha256 %s; cards for %s); knowledge %s",
        policy["mode"],
        policy["file"] or "none: PGX_CDS_SITE_CONFIG unset",
        policy["sha256"] or "-",
        policy["ehr"],
        knowledge.version,
    )
    hash_keys = settings.hash_keys()
    if not hash_keys:
        log.warning(
            "no PGX_CDS_HASH_KEY: the card log's patient hashes are keyed by a key kept in the "
            "same database (anyone with a copy of it can find the patients): testing only"
        )
    if settings.trusted_issuers and settings.allow_insecure_http:
        log.warning(
            "PGX_CDS_ALLOW_INSECURE_HTTP: key sets and FHIR servers may be read over plain "
            "http:// (keys and patient data in clear on the network): testing only"
        )
    store = FeedbackStore(
        settings.database_url,
        hash_keys,
        on_stored=metrics.record_feedback,
        per_minute=settings.feedback_per_minute,
        unknown_per_hour=settings.feedback_unknown_per_hour,
    )
    store.card_log.on_lost = metrics.record_cards_lost

    def bring_schema_up_to_date() -> None:
        schema.prepare(store.engine, settings.migrate_on_start)

    try:
        bring_schema_up_to_date()
    except OperationalError as exc:
        # The database is down: hook calls do not need it. Feedback answers 503 (and brings
        # the schema up to date first) until it is back; readiness says "degraded".
        log.warning(
            "database %s unreachable at start (%s): serving hooks; feedback waits for it",
            describe_database(settings.database_url),
            type(exc).__name__,
        )
        store.prepare = bring_schema_up_to_date
    # The patient references in logs are keyed from the card log's key: set when it is known.
    store.card_log.on_key = set_ref_key
    if store.prepare is None:
        # Read once here (before workers fork), not by the first hook call that logs a card;
        # a new connection to a remote database may take longer than a hook call may wait.
        with contextlib.suppress(SQLAlchemyError):
            store.card_log.key(timeout=START_DB_SECONDS)  # (tells set_ref_key)
    # FHIR reads go through a session that never connects to link-local/metadata addresses.
    engine = Engine(
        knowledge,
        settings,
        session=guarded_session(),
        card_log=store.card_log,
        site=site,
        call_counts=CallCounts(store.engine),
    )
    labels = CardLabels(knowledge)

    metrics.meter_session(engine.session)
    metrics.KNOWLEDGE.labels(knowledge.version).set(1)
    metrics.BUILD.labels(
        __version__, knowledge.version, platform.python_version(), policy["mode"], policy["ehr"]
    ).set(1)
    discovery_body = discovery(knowledge, site.active_hooks())
    # Seen client JWTs live in the service's database: shared by replicas, kept on restart.
    replay = ReplayCache(
        store.engine, prepare=bring_schema_up_to_date, fallback=settings.replay_fallback
    )
    verifier = JwtVerifier(settings.trusted_issuers, replay=replay)
    if not verifier.enabled:
        log.warning("no PGX_CDS_TRUSTED_ISSUERS: CDS clients are not authenticated")

    return Services(
        settings=settings,
        knowledge=knowledge,
        site=site,
        policy=policy,
        engine=engine,
        store=store,
        verifier=verifier,
        labels=labels,
        discovery_body=discovery_body,
        known_results=KnownValues(("prefetch", GENOMIC_RESULTS)),
    )
