"""Prometheus metrics (``GET /metrics``), aggregated across gunicorn's worker processes.

``pgx-cds serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh temporary folder before this
module is imported, so every worker writes its samples there and ``/metrics`` (answered by any
worker) adds them up. Without it (tests, a single-process server) the process's own registry is
used. Labels are bounded sets (services, endpoints, statuses, drugs, genes, indicators): never
patients, orders or anything a caller chooses freely.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import requests
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from requests.adapters import HTTPAdapter

from ..governance.labels import CardLabels
from ..store.card_log import IssuedCard


class _ProcessId:
    """This process's id, asked of the system once and again only after a fork.

    In multi-process mode every sample first checks the process id (a fork must start the
    child's own files); ``os.getpid`` is a system call, three of them a hook call."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        os.register_at_fork(after_in_child=self.refresh)

    def refresh(self) -> None:
        self.pid = os.getpid()

    def __call__(self) -> int:
        return self.pid


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # (before any metric below is made)
    values.ValueClass = values.MultiProcessValue(process_identifier=_ProcessId())

#: Seconds. A hook call with prefetch takes a few milliseconds (the median near 1 ms): the
#: buckets start at half a millisecond so the median and its changes show.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

REQUESTS = Counter(
    "pgx_cds_http_requests_total",
    "HTTP requests answered, by endpoint, CDS service and status code.",
    ["endpoint", "service", "status"],
)
LATENCY = Histogram(
    "pgx_cds_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint and CDS service.",
    ["endpoint", "service"],
    buckets=LATENCY_BUCKETS,
)
CARDS = Counter(
    "pgx_cds_cards_total",
    "Cards decided, by drug (patient-view: the profile card), gene(s) or marker, indicator "
    "and whether shown (false: silent by the site policy, logged only).",
    ["drug", "gene", "indicator", "shown"],
)
PRECONDITION_FAILED = Counter(
    "pgx_cds_precondition_failed_total",
    "Hook calls answered 412: genomic data neither prefetched nor retrievable.",
    ["service"],
)
FEEDBACK = Counter(
    "pgx_cds_feedback_total",
    "Feedback items stored, by CDS service and outcome.",
    ["service", "outcome"],
)
CARDS_LOST = Counter(
    "pgx_cds_card_log_lost_total",
    "Cards returned but never written to the card log (kept while the database was down "
    "until the limit, or still waiting at exit).",
)
FHIR_REQUESTS = Counter(
    "pgx_cds_fhir_requests_total",
    "Reads from the EHR's FHIR server, by outcome (ok, not_found, client_error, "
    "server_error, timeout, error).",
    ["outcome"],
)
FHIR_LATENCY = Histogram(
    "pgx_cds_fhir_request_duration_seconds",
    "Time of one read from the EHR's FHIR server, by outcome.",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
UNEXPECTED = Counter(
    "pgx_cds_unexpected_errors_total",
    "Requests that failed with an unexpected error (a bug: answered 500, logged at ERROR "
    "with where it happened), by endpoint and error type.",
    ["endpoint", "error"],
)
KNOWLEDGE = Gauge(
    "pgx_cds_knowledge_info",
    "The knowledge version loaded (value 1).",
    ["version"],
    multiprocess_mode="max",
)
BUILD = Gauge(
    "pgx_cds_build_info",
    "The service's build (value 1): package version, knowledge version, Python version, the "
    "site policy's mode and the EHR its cards are shaped for.",
    ["version", "knowledge", "python", "site_mode", "ehr"],
    multiprocess_mode="max",
)


def exposition() -> tuple[bytes, str]:
    """The metrics text, summed over all worker processes when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


#: (endpoint, service, status) -> its request counter and latency histogram: looked up once
#: (the label sets are bounded, see above), not through ``labels`` on every request
_PER_REQUEST: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def record_request(endpoint: str, service: str, status: int, seconds: float) -> None:
    key = (endpoint, service, status)
    found = _PER_REQUEST.get(key)
    if found is None:
        found = REQUESTS.labels(endpoint, service, str(status)), LATENCY.labels(endpoint, service)
        _PER_REQUEST[key] = found
    found[0].inc()
    found[1].observe(seconds)
    if status == 412 and endpoint == "hook":
        PRECONDITION_FAILED.labels(service).inc()


_PER_CARD: dict[tuple[str, str, str, str], Any] = {}


def record_cards(labels: CardLabels, shown: list[IssuedCard], silent: list[IssuedCard]) -> None:
    """Count a call's cards, shown and silent, by drug, gene(s) and indicator (the labels are
    the knowledge's: bounded, so each counter is looked up once and kept)."""
    for records, was_shown in ((shown, "true"), (silent, "false")):
        for r in records:
            gene = labels.gene(r.recommendation_id, r.drug, r.genes)
            key = (r.drug, gene, r.indicator, was_shown)
            found = _PER_CARD.get(key)
            if found is None:
                found = _PER_CARD[key] = CARDS.labels(*key)
            found.inc()


def record_unexpected(endpoint: str, error: str) -> None:
    UNEXPECTED.labels(endpoint, error).inc()


def record_feedback(stored: Iterable[tuple[str, str]]) -> None:
    """Count the feedback items just stored, as (service, outcome): a resent item, which is
    acknowledged but not stored again, is not counted again."""
    for service, outcome in stored:
        FEEDBACK.labels(service, outcome).inc()


def record_cards_lost(count: int) -> None:
    """Count cards that could not be written to the card log at all."""
    CARDS_LOST.inc(count)


def _fhir_outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 404:
        return "not_found"
    return "client_error" if status < 500 else "server_error"


class MeteredAdapter(HTTPAdapter):
    """Times every FHIR read the service makes through its shared session (the reads that go
    the direct way, ``fhir.direct.DirectGet``, report here through ``observe``)."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        status: int | None = None
        timed_out = False
        try:
            response = super().send(request, *args, **kwargs)
            status = response.status_code
            return response
        except requests.Timeout:
            timed_out = True
            raise
        finally:
            self.observe(status, time.perf_counter() - started, timed_out=timed_out)

    @staticmethod
    def observe(status: int | None, seconds: float, *, timed_out: bool = False) -> None:
        """One read: its status (None: no answer) and seconds until its headers arrived."""
        outcome = "error" if status is None else _fhir_outcome(status)
        if timed_out:
            outcome = "timeout"
        FHIR_REQUESTS.labels(outcome).inc()
        FHIR_LATENCY.labels(outcome).observe(seconds)


def meter_session(session: requests.Session) -> None:
    """Time the session's reads, keeping whatever adapter it has (the SSRF guard)."""
    for prefix in ("http://", "https://"):
        current = type(session.get_adapter(prefix))
        if issubclass(current, MeteredAdapter):
            continue
        metered = type(f"Metered{current.__name__}", (MeteredAdapter, current), {})
        session.mount(prefix, metered())
