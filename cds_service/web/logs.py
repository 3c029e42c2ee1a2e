"""Logging, set up the same whatever server runs the app (``create_app`` calls it).

``PGX_CDS_LOG_FORMAT=text`` (default) or ``json`` (one JSON object a line, for log shippers).
Every line written while a request is handled carries its request id: the caller's
``X-Request-ID`` when it sent a sane one, else a fresh one (echoed in the response).
A line may carry fields (``extra={"fields": {...}}``): in JSON they are keys of the object
(the request line: ``method``, ``route``, ``status``, ``duration_ms``, ``service``, ``hook``,
``hookInstance``, ``patient``, ``cards`` by indicator, ``silent_cards``); the text format
keeps the sentence. What is logged never includes bodies, patient identifiers or tokens
(see app.py).
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context

_HANDLER_NAME = "pgx-cds"
#: An incoming request id is kept only if it is short and plain: it is written on every log
#: line of the request, so it must not be a place for a token to ride in (no check can tell a
#: record number from an id: the EHR is trusted not to send one).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def request_id_from(header: str | None) -> str:
    """The incoming X-Request-ID if it is short and plain (at most 64 letters, digits and
    ``._:-``: no spaces, quotes or control characters that could forge log lines) and does not
    look like a JWT (``eyJ…`` with two dots), else a new random one."""
    if header and _REQUEST_ID.fullmatch(header) and not _looks_like_jwt(header):
        return header
    # 128 random bits, as a uuid4's hex, without its system call per request: the id only
    # tells requests apart in logs, it guards nothing (``random`` is reseeded in a forked
    # worker, so workers do not repeat each other's ids).
    return f"{random.getrandbits(128):032x}"


#: A hookInstance is logged when it is a plain id (CDS Hooks: a UUID; Epic sends version-1
#: UUIDs): at most 100 letters, digits and ``._:-``, and not a JWT.
_HOOK_INSTANCE = re.compile(r"[A-Za-z0-9._:-]{1,100}")
NOT_LOGGED = "(not a plain id: not logged)"


def hook_instance_from(value: str) -> str:
    """The call's ``hookInstance`` as a log line may carry it: the id an EHR analyst
    correlates on when it is plain, else a fixed word (a caller's text never forges a line
    or smuggles a token into the logs)."""
    if _HOOK_INSTANCE.fullmatch(value) and not _looks_like_jwt(value):
        return value
    return NOT_LOGGED


def _looks_like_jwt(value: str) -> bool:
    """A compact JWS/JWT: base64url of a JSON header (``{"`` encodes as ``eyJ``), then two
    dots. Even a small one fits in 64 characters, and a bearer token must never be logged."""
    return value.startswith("eyJ") and value.count(".") >= 2


class _RequestIdFilter(logging.Filter):
    """The request id of the request being handled, or the one a line logged after its
    answer names (``extra={"request_id": …}``), else "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = g.get("request_id") if has_request_context() else None
        record.request_id = rid or getattr(record, "request_id", None) or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "-")
        if rid != "-":
            entry["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def record_only_what_is_written() -> None:
    """Neither format writes the caller's file and line, the thread or the process: a log
    record skips finding them (a walk up the stack, a system call for the process id) on
    every line, as the logging HOWTO's "Optimization" section describes. For the process
    ``pgx-cds serve`` runs (these are the logging module's own switches, for every logger in
    the process: an application embedding ``create_app`` keeps its own choice)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (test runners and servers replace it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def flush(self) -> None:
        # Python's stderr (3.9 and later, to a file, a pipe or a terminal) writes through to
        # an unbuffered file: the handler's one write put the line out. A stream put in its
        # place is flushed as StreamHandler does, unless line-buffered (its newline did it).
        stream = sys.stderr
        unbuffered = isinstance(getattr(stream, "buffer", None), io.RawIOBase)
        through = unbuffered and getattr(stream, "write_through", False)
        if not (through or getattr(stream, "line_buffering", False)):
            super().flush()


class _TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, its timestamp's date and time made once a second, not once a line."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        cached, text = self._second
        if second != cached:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"  # the logging module's default_msec_format


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """One handler on the root logger, to stderr; calling again only updates it."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.addFilter(_RequestIdFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter(TEXT_FORMAT))
    root.setLevel(level)
    logging.getLogger("cds_service").setLevel(level)
    # Alembic narrates every step at INFO; cds_service.schema logs what changed.
    logging.getLogger("alembic").setLevel(max(logging.getLevelName(level), logging.WARNING))
