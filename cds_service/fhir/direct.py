"""The direct way of a read: plain GETs on http.client connections of our own.

requests and urllib3 cost about 0.3 ms of CPU a read over http.client's own (building the
request and response objects, pool and retry bookkeeping), paid under the interpreter lock
by every read of a call at once: about 1.5 ms of a FHIR-path call against the integration
FHIR server (bench/bench_load.py). A plain GET needs none of it, so it goes on http.client
connections of our own: made by ``addresses.guarded_socket``, kept alive per origin, TLS
verified against the same CA bundle as requests' (``session.verify``).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import re
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import certifi
import requests
import urllib3
from requests.adapters import HTTPAdapter

from ..core.deadlines import WATCHDOG
from .addresses import Watch, current, guarded_socket
from .limits import CHUNK, READ_ERRORS, FetchFailed, Gunzip, failure_text, read_body
from .session import GuardedAdapter, proxies_for

#: Idle keep-alive connections kept per origin (requests keeps 10).
IDLE_PER_ORIGIN = 10
_REQUESTS_SEND = HTTPAdapter.send


def direct_adapter(session: requests.Session, url: str) -> GuardedAdapter | None:
    """The session's adapter for ``url`` if this read can go the direct way (the adapter
    meters it), else None: not through a proxy or with a client certificate (requests
    handles those), nor when requests' transport has been replaced (a mock such as
    ``responses`` in the unit tests, an instrumentation): then it sees every read."""
    scheme = url[:8].lower()
    if not (scheme.startswith("http://") or scheme.startswith("https://")):
        return None
    adapter = session.get_adapter(url)
    if not isinstance(adapter, GuardedAdapter):
        return None
    direct = (
        HTTPAdapter.send is _REQUESTS_SEND
        and session.cert is None
        and session.verify is not False
        and url.isascii()
        and not proxies_for(url)
    )
    return adapter if direct else None


def _guarded_create(
    address: tuple[str, int], timeout: Any = None, source_address: Any = None
) -> socket.socket:
    """http.client's ``_create_connection``, through the guard."""
    return guarded_socket(
        address[0], address[1], timeout if isinstance(timeout, int | float) else None
    )


class _DirectHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._create_connection = _guarded_create


class _DirectHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._create_connection = _guarded_create


@functools.lru_cache(maxsize=8)
def _tls_context(verify: str | bool) -> ssl.SSLContext:
    """Certificates and host names checked against the CA bundle requests would use:
    ``session.verify`` (the environment's bundle) or certifi's, as requests does."""
    if verify is True:
        return ssl.create_default_context(cafile=certifi.where())
    path = str(verify)
    if os.path.isdir(path):
        return ssl.create_default_context(capath=path)
    return ssl.create_default_context(cafile=path)


#: (scheme, host, port, CA bundle): connections verified against one bundle serve only it.
Origin = tuple[str, str, int, str]
#: Idle connections kept in all, the least recently used origin's oldest dropped first (a
#: caller naming many FHIR servers cannot make us hold many sockets), and how long one is kept.
IDLE_MAX = 32
IDLE_SECONDS = 30.0


class _Idle:
    """Idle keep-alive connections by origin, the most recent taken first. One that the server
    has closed meanwhile, or that has anything to read while idle (bytes the last answer did
    not account for, which must never become the next read's answer), is dropped when taken,
    as urllib3 does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_origin: OrderedDict[Origin, list[tuple[float, http.client.HTTPConnection]]]
        self._by_origin = OrderedDict()
        self._count = 0

    def take(self, origin: Origin) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                idle = self._by_origin.get(origin)
                if not idle:
                    return None
                since, conn = idle.pop()
                self._count -= 1
            if time.monotonic() - since < IDLE_SECONDS and not _dropped(conn):
                return conn
            conn.close()

    def give(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        evicted: list[http.client.HTTPConnection] = []
        with self._lock:
            idle = self._by_origin.setdefault(origin, [])
            self._by_origin.move_to_end(origin)
            if len(idle) >= IDLE_PER_ORIGIN:
                evicted.append(conn)
            else:
                idle.append((time.monotonic(), conn))
                self._count += 1
            while self._count > IDLE_MAX:
                oldest_origin, oldest = next(iter(self._by_origin.items()))
                if oldest:
                    evicted.append(oldest.pop(0)[1])
                    self._count -= 1
                if not oldest:
                    del self._by_origin[oldest_origin]
        for old in evicted:
            old.close()

    def close_all(self, *, locked: bool = True) -> None:
        """Close every idle connection (``locked=False``: in a forked child, where a lock
        some other thread held at the fork stays held for ever)."""
        with self._lock if locked else contextlib.nullcontext():
            conns = [c for idle in list(self._by_origin.values()) for _, c in list(idle)]
            self._by_origin.clear()
            self._count = 0
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    sock = conn.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))  # an idle connection has nothing to read unless it ended


_IDLE = _Idle()


def _reset_idle() -> None:
    """In a forked worker: the parent's connections are not this process's to use."""
    global _IDLE
    old, _IDLE = _IDLE, _Idle()
    old.close_all(locked=False)


os.register_at_fork(after_in_child=_reset_idle)
#: What may stand in a query as it is (RFC 3986: unreserved, sub-delims, ":", "@", "/", "?"):
#: urllib3 percent-encodes any other character (a genomic query's "|"), a character at a time
#: in Python, tens of microseconds for a genomic query; a regular expression finds them in C.
_QUERY_AS_IS = r"A-Za-z0-9\-._~!$&'()*+,;=:@/?"
_TO_ENCODE = re.compile(f"[^{_QUERY_AS_IS}%]")
_TO_ENCODE_WITH_PERCENT = re.compile(f"[^{_QUERY_AS_IS}]")
_PERCENT_ESCAPE = re.compile(r"%[a-fA-F0-9]{2}")


def _encoded_query(query: str) -> str:
    """An ASCII query as urllib3 encodes it: escapes upper-cased, "%" kept when every "%"
    starts an escape (else encoded too), every character outside ``_QUERY_AS_IS`` encoded."""
    if "%" in query:
        query, escapes = _PERCENT_ESCAPE.subn(lambda m: m.group(0).upper(), query)
        to_encode = _TO_ENCODE if escapes == query.count("%") else _TO_ENCODE_WITH_PERCENT
    else:
        to_encode = _TO_ENCODE
    return to_encode.sub(lambda m: f"%{ord(m.group()):02X}", query)


def _wire_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path and query) as requests would send ``url``: its parsing
    (urllib3's, which encodes what may not stand in a path or query) then its requoting.
    An ASCII URL without a fragment has its query encoded here (``_encoded_query``), the same
    as urllib3 would; the rest is urllib3's."""
    base, mark, query = url.partition("?")
    if mark and url.isascii() and "#" not in url:
        parsed = urllib3.util.parse_url(base)
        encoded: str | None = _encoded_query(query)
    else:
        parsed = urllib3.util.parse_url(url)
        encoded = parsed.query
    scheme = (parsed.scheme or "").lower()
    port = parsed.port or (443 if scheme == "https" else 80)
    target = requests.utils.requote_uri((parsed.path or "/") + (f"?{encoded}" if encoded else ""))
    return scheme, (parsed.host or "").strip("[]"), port, target


class DirectGet:
    """One GET the direct way, in two steps: ``sent`` (the request written on a kept-alive
    connection, or a new one) and ``result`` (the answer read; the connection kept for the
    next read if the answer was read to its end). The deadline's watchdog covers both."""

    def __init__(
        self,
        adapter: GuardedAdapter,
        session: requests.Session,
        url: str,
        headers: dict[str, str],
        per_read: float,
        deadline: float,
        max_bytes: int,
    ) -> None:
        self.scheme, self.host, self.port, self.target = _wire_url(url)
        verify = session.verify
        self.origin = (
            self.scheme,
            self.host,
            self.port,
            str(verify) if self.scheme == "https" else "",
        )
        self.verify = verify
        # what requests sends, and only the codings read below
        self.headers = {**session.headers, **headers, "Accept-Encoding": "gzip"}
        self.observe = getattr(adapter, "observe", None)  # (the metrics' adapter)
        self.per_read = per_read
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.watch = Watch(deadline=deadline)
        self.conn: http.client.HTTPConnection | None = None
        self.reused = False
        self.failure: str | None = None
        self.started = 0.0
        self.observed = False
        #: ``time.perf_counter()`` when its answer was seen arriving (``wait_for``)
        self.arrived: float | None = None
        #: filled with the answer's headers (lower-case names) when set (``bounded_get``)
        self.answer_headers: dict[str, str] | None = None

    def sent(self, *, idle_only: bool) -> DirectGet:
        """Write the request: on a kept-alive connection, else (unless ``idle_only``) on a new
        one. ``idle_only`` and none free (or the one taken broke): nothing is sent, ``conn``
        stays None, and the read may go another way."""
        self.started = time.perf_counter()
        WATCHDOG.arm(self.deadline, self.watch)
        try:
            self._send(reuse=True, connect=not idle_only)
        except READ_ERRORS as exc:
            if idle_only:  # the read goes another way, which meets the fault and reports it
                self.discard()
                return self
            self._fail(exc)
        if self.conn is None:
            WATCHDOG.disarm(self.watch)
        return self

    def _send(self, *, reuse: bool, connect: bool) -> None:
        conn = _IDLE.take(self.origin) if reuse else None
        self.reused = conn is not None
        if conn is None and not connect:
            return
        current.watch = self.watch  # (the connection's lookup counts against the deadline)
        try:
            while True:
                if conn is None:
                    conn = (
                        _DirectHTTPS(self.host, self.port, self.per_read, _tls_context(self.verify))
                        if self.scheme == "https"
                        else _DirectHTTP(self.host, self.port, self.per_read)
                    )
                    self.conn = conn
                    conn.connect()
                elif conn.sock is not None:
                    conn.sock.settimeout(self.per_read)
                self.conn = conn
                self.watch.attach(conn)  # past the deadline already: TimeoutError, nothing sent
                try:
                    conn.request("GET", self.target, headers=self.headers)
                    return
                except (ConnectionResetError, BrokenPipeError):
                    if not self.reused or self.watch.expired or time.monotonic() >= self.deadline:
                        raise
                    # the server closed this kept-alive connection as we sent
                    conn.close()
                    conn, self.conn, self.reused = None, None, False
                    if not connect:
                        return
        finally:
            current.watch = None

    def _fail(self, exc: BaseException) -> None:
        if self.observe is not None and not self.observed:  # (once: a status is observed)
            self.observed = True
            self.observe(
                None, time.perf_counter() - self.started, timed_out=isinstance(exc, TimeoutError)
            )
        self.failure = failure_text(exc, self.deadline)
        self.discard()

    def discard(self) -> None:
        WATCHDOG.disarm(self.watch)
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def result(self) -> tuple[int, bytes]:
        try:
            if self.failure is None:
                return self._receive()
        except READ_ERRORS as exc:
            self._fail(exc)
        finally:
            WATCHDOG.disarm(self.watch)
            if self.conn is not None:  # (not kept for the next read)
                self.conn.close()
                self.conn = None
        # raised here, not in the handler, so that it carries no trace of the error (whose
        # text may quote the URL or a header, the token included) for whoever inspects it
        raise FetchFailed(self.failure or "not sent")

    def _receive(self) -> tuple[int, bytes]:
        while True:
            assert self.conn is not None
            try:
                response = self.conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not self.reused or self.watch.expired or time.monotonic() >= self.deadline:
                    raise  # (a connection the watchdog cut is not a server's keep-alive close)
                # the server closed this kept-alive connection as we sent: once more, anew
                self.conn.close()
                self.conn, self.arrived = None, None
                self._send(reuse=False, connect=True)
        status = response.status
        if self.answer_headers is not None:
            self.answer_headers.update({k.lower(): v for k, v in response.getheaders()})
        if self.observe is not None:
            self.observed = True
            self.observe(status, (self.arrived or time.perf_counter()) - self.started)
        if status != 200:
            return status, b""
        coding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if coding in ("gzip", "x-gzip"):
            read1: Callable[[], bytes] = Gunzip(response, self.max_bytes).read1
        elif coding == "identity":
            read1 = functools.partial(response.read1, CHUNK)
        else:
            raise ValueError("an answer in a coding that was not asked for")
        body = read_body(read1, self.deadline, self.max_bytes)
        if response.length:  # http.client's read1 ends quietly where the server hung up
            raise http.client.IncompleteRead(b"", response.length)
        ended = response.length == 0 or (response.chunked and response.isclosed())
        if ended and not response.will_close and self.watch.detach():
            response.close()  # read to its end, not cut: ready for the next read
            _IDLE.give(self.origin, self.conn)
            self.conn = None
        return 200, body
