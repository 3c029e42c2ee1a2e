"""``pgx-cds serve``: the app on gunicorn, one worker process per core by default.

The app is built once in this (master) process before any worker is forked: a broken setting
or knowledge file, or a database schema this version cannot use, stops the start with one
clear line (a database that cannot be reached does not: the service starts degraded); the
schema is migrated once, and the workers share the loaded knowledge. SIGTERM (``docker
stop``, Kubernetes) stops accepting connections, lets requests in flight finish for up to
``GRACEFUL_TIMEOUT_S`` and exits, well inside the usual 10 s before a SIGKILL.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

from flask import Flask
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.http import wsgi as gunicorn_wsgi

from ..core.logsafe import clean
from .gather import GatheringWorker
from .logs import configure_logging, record_only_what_is_written

log = logging.getLogger("cds_service")

GRACEFUL_TIMEOUT_S = 3
#: A worker silent this long is restarted (a hook call is bounded far below it).
WORKER_TIMEOUT_S = 30


class StartupError(Exception):
    """Something the operator must fix before the service can start (exit code 2)."""


def check_port_free(host: str, port: int) -> None:
    """Fail now, in one line, rather than after gunicorn's five retries and a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"cannot listen on {host}:{port}: the port is already in use; stop the other "
                    "server or choose another --port"
                ) from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise StartupError(
                    f"cannot listen on {host}:{port}: permission denied; use a port above 1023"
                ) from None
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def prepare_metrics_dir() -> str:
    """A fresh folder for the workers' metric files (removed again by ``cleanup``).

    Set before ``prometheus_client`` is first imported, which reads it at import time.
    """
    try:
        path = tempfile.mkdtemp(prefix="pgx-cds-metrics-")
    except OSError as exc:
        raise StartupError(
            f"cannot create a temporary folder in {tempfile.gettempdir()}: {exc.strerror}; "
            "mount a writable tmpfs at /tmp (docker run --tmpfs /tmp) or set TMPDIR"
        ) from None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


class _WithoutRequestText(logging.Filter):
    """gunicorn's messages about a bad or broken-off request quote it: its request line (path
    and query), a header, or all that had arrived (``Authorization: Bearer …`` included).
    They keep what happened and lose the quote."""

    _INVALID = "Invalid request from ip="
    _QUOTING = ("Error handling request", "Ignored premature client disconnection")
    _WORDS = re.compile(r"[A-Za-z][A-Za-z ]*")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if not isinstance(message, str):
            return True
        if message.startswith(self._INVALID):
            # "Invalid request from ip=10.0.0.7: Invalid HTTP request line: 'GET /…'"
            ip, _, error = message[len(self._INVALID) :].partition(": ")
            kind = self._WORDS.match(error)
            record.msg = "Invalid request from ip=%s: %s (the request is not logged)"
            record.args = (clean(ip, 64), kind.group().strip() if kind else "unreadable")
        elif message.startswith(self._QUOTING):
            record.msg = message.split(" %s", 1)[0].rstrip(".")
            record.args = ()
        return True


class _Logger(GunicornLogger):
    """gunicorn's messages go through the service's own logging (same format, JSON or text),
    without the request text some of them quote; its access log stays off: the app logs each
    request without identifiers."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
        self.access_log.disabled = True
        if not any(isinstance(f, _WithoutRequestText) for f in self.error_log.filters):
            self.error_log.addFilter(_WithoutRequestText())


#: Connections at most closed gracefully at one time per worker (each may wait 2 s for the
#: client); past it a connection is closed at once, so file descriptors cannot pile up.
MAX_LINGERING = 64


class _Worker(GatheringWorker):
    """gunicorn's gthread worker, whose loop gathers each request before a request thread
    takes it (gather.py: slow and idle clients, ``/healthz`` from the loop).

    And a connection that ends after its answer (no keep-alive) is closed off the worker's
    main loop: gunicorn lingers up to 2 s there for the client to close its side, and during
    that time the worker accepts no connection at all; a client that never closes (or many
    in turn) would hold every caller."""

    _closer: ThreadPoolExecutor | None = None

    def finish_request(self, conn: Any, fs: Any) -> None:
        try:
            ends = not fs.cancelled() and fs.result() is False
        except Exception:  # gunicorn's own handling below
            ends = False
        if not ends:
            super().finish_request(conn, fs)
            return
        self.nr_conns -= 1
        if self._closer is None:
            self._closer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="close")
        if self._lingering >= MAX_LINGERING:  # many clients that do not close: no waiting
            conn.close()
            return
        self._lingering += 1
        self._closer.submit(self._close_gracefully, conn)

    _lingering = 0

    def _close_gracefully(self, conn: Any) -> None:
        try:
            conn.close(graceful=True)
        finally:
            self._lingering -= 1  # (a racy count at worst: a bound, not a ledger)


#: What gunicorn's own refusals (before the app sees the request) say, as JSON like every
#: other error of the service; the request is never quoted. Unsupported transfer codings are
#: a client's error here (400), not gunicorn's 501.
_GUNICORN_ERRORS = {
    400: "the request is not valid HTTP/1.1 (request line, headers or body framing)",
    403: "the request is forbidden",
    414: "the request line is too long",
    417: "the Expect header cannot be met",
    431: "the request headers are too large or too many",
    500: "internal error",
    501: "the request's Transfer-Encoding is not supported",
}


def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Replaces gunicorn's HTML error page (``gunicorn.util.write_error``)."""
    status = 400 if status_int == 501 else status_int
    text = _GUNICORN_ERRORS.get(status_int, "the request was refused")
    body = json.dumps({"error": text}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn_util.write_error = _write_json_error


#: The largest body sent in one write with its head (a hook call's answer is a few KB; a
#: larger one is not copied to join them).
ONE_WRITE_MAX = 256 * 1024


class _OneWriteResponse(gunicorn_wsgi.Response):
    """gunicorn's response, whose head and whole body (a ``Content-Length`` answer in one
    piece, as every answer of the service is) go out in one write, not two: one system call,
    one TCP segment on the way and one wake-up of the client fewer for every answer. The
    bytes are gunicorn's own; anything else (chunked, streamed, no body, very large) is
    written by gunicorn as before."""

    headers_sent: bool  # (gunicorn's attributes, set in its __init__)
    sent: int

    def write(self, arg: Any) -> None:
        if (
            self.headers_sent
            or self.chunked
            or getattr(self, "_omits_body", True)
            or type(arg) is not bytes
            or self.response_length != len(arg)
            or len(arg) > ONE_WRITE_MAX
        ):
            super().write(arg)
            return
        head = [*self.default_headers(), *[f"{k}: {v}\r\n" for k, v in self.headers], "\r\n"]
        gunicorn_util.write(self.sock, "".join(head).encode("latin-1") + arg)
        self.headers_sent = True
        self.sent += len(arg)


gunicorn_wsgi.Response = _OneWriteResponse  # (``wsgi.create`` builds each response from it)


class _Gunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # older gunicorn versions lack some settings
                self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def run(app: Flask, host: str, port: int, workers: int, threads: int, log_settings: Any) -> None:
    """Serve ``app`` until SIGTERM/SIGINT."""
    # (imported here: the metrics must not be imported before prepare_metrics_dir has run)
    from .wiring import services

    store = services(app).store

    def post_fork(server: Any, worker: Any) -> None:
        # Connections opened by the master (migrations) must not be shared with a child.
        store.engine.dispose(close=False)

    def post_worker_init(worker: Any) -> None:
        configure_logging(log_settings.log_level, log_settings.log_format)

    def child_exit(server: Any, worker: Any) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid)

    metrics_port = getattr(log_settings, "metrics_port", None)

    def when_ready(server: Any) -> None:
        if metrics_port is not None:
            serve_metrics(host, metrics_port)

    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options: dict[str, Any] = {
        "bind": [bind],
        "workers": workers,
        "worker_class": f"{__name__}._Worker",
        "threads": threads,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "timeout": WORKER_TIMEOUT_S,
        "keepalive": 5,
        "proc_name": "pgx-cds",
        "logger_class": _Logger,
        "loglevel": log_settings.log_level.lower(),
        "accesslog": None,
        "errorlog": "-",
        "control_socket_disable": True,
        "post_fork": post_fork,
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
        "when_ready": when_ready,
    }
    log.info(
        "serving on http://%s/cds-services with %d worker(s) x %d thread(s)", bind, workers, threads
    )
    # The knowledge and the app live as long as the process: out of the garbage collector's
    # sight, so that collections in the workers do not scan them again and again (tail
    # latency), and so that forked workers keep sharing their memory pages.
    record_only_what_is_written()  # (inherited by the workers)
    gc.collect()
    gc.freeze()
    # A hook call allocates many short-lived objects: collect the youngest generation less
    # often (measured with bench/bench_load.py).
    gc.set_threshold(50_000, 20, 20)
    _Gunicorn(app, options).run()


def serve_metrics(host: str, port: int) -> None:
    """``GET /metrics`` (summed over the workers) on ``port``, apart from the hook port: from
    the master process, by prometheus_client's own HTTP server on a thread of its own
    (gunicorn's ``when_ready``), so Prometheus reads it without a credential while the hook
    port's every route needs one, and while the workers are busy."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, port)


def cleanup(metrics_dir: str | None) -> None:
    """Remove the metric files of a finished run."""
    if metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)
