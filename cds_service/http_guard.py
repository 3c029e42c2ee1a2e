"""Outbound HTTP with a total deadline, a size cap, and no requests to forbidden addresses.

``bounded_get`` reads one response within a deadline shared by all reads of a hook call
(socket timeouts apply per read: a server dripping one byte a second would otherwise hold
the call for ever) and stops at a size cap (an endless stream must not fill memory).

``guarded_session`` returns a ``requests.Session`` whose connections refuse link-local and
cloud-metadata addresses, both as resolved and as actually connected (DNS rebinding). It keeps
no cookies (one session serves every caller: a cookie set for one user's call must never ride
along with another's), never reads ``~/.netrc`` (its credentials would replace the caller's
token), and reads the proxy and CA-bundle environment once, not on every read (requests would
otherwise scan the environment and stat files for each one: about half a millisecond).

A read goes one of two ways, with the same guard (``guarded_socket``), deadline and cap: the
direct way (``_DirectGet``: http.client connections of our own, kept alive per origin), or
requests' (``_requests_get``) for a proxy, a client certificate, or when requests' transport
has been replaced (the ``responses`` mock of the unit tests, an instrumentation).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import http.client
import http.cookiejar
import ipaddress
import logging
import os
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .deadlines import WATCHDOG

log = logging.getLogger("cds_service.http")

# Cloud instance-metadata endpoints outside the link-local ranges, and the names they go by.
METADATA_NETWORKS = [
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS (IPv6)
]
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})


class FetchFailed(Exception):
    """The response could not be had within the deadline and size cap (detail: for logs)."""


def forbidden_address(address: str) -> bool:
    """Link-local (169.254/16, fe80::/10: where cloud metadata lives), a known metadata
    address, multicast or unspecified; IPv4 also in the legacy forms the C resolver reads."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        legacy = _legacy_ipv4(address)
        if legacy is None:
            return False
        ip = legacy
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or any(ip in net for net in METADATA_NETWORKS)
    )


def _legacy_ipv4(address: str) -> ipaddress.IPv4Address | None:
    """``address`` as an IPv4 address if ``inet_aton`` reads it as one: one to four parts,
    each decimal, octal (leading 0) or hex (0x), e.g. 2852039166, 0xa9fea9fe, 169.254.43518
    and 0251.0376.0251.0376, all 169.254.169.254. ``getaddrinfo`` (and so the connection)
    reads them so, ``ipaddress`` does not."""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(address))
    except (OSError, ValueError):  # not an address; ValueError: a NUL or non-ASCII
        return None


def forbidden_host(host: str) -> bool:
    """A host name or literal address the service never contacts."""
    host = host.strip("[]").rstrip(".").lower()
    return host in METADATA_HOSTS or forbidden_address(host)


@dataclass
class _Watch:
    """The connection a read in this thread is using, for the deadline watchdog (which calls
    ``expire`` once, from its own thread, when the deadline comes first)."""

    connection: Any = None  # urllib3's or http.client's: what has the socket
    done: bool = False
    deadline: float | None = None  # time.monotonic(): the read's whole budget
    expired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expire(self) -> None:
        """Cut the connection, so that a blocked read returns now; one attached later is
        refused (``attach``)."""
        with self.lock:
            self.expired = True
            sock = getattr(self.connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def attach(self, connection: Any) -> None:
        """Watch ``connection`` (connected: it has its socket) from now on; past the deadline
        already, it is not used (the watchdog, having fired, would not cut it)."""
        with self.lock:
            if self.expired:
                raise TimeoutError("the deadline passed")
            self.connection = connection

    def detach(self) -> bool:
        """Stop watching the connection (before it is kept for another read); False if the
        deadline came first and cut it."""
        with self.lock:
            self.connection = None
            return not self.expired


_current = threading.local()


_RESOLVER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dns")


def _reset_resolver() -> None:
    global _RESOLVER
    _RESOLVER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dns")


os.register_at_fork(after_in_child=_reset_resolver)


def _resolve(host: str, port: int, wait: float | None) -> list[Any]:
    """getaddrinfo within ``wait`` seconds (a resolver that does not answer would otherwise
    hold the call past its budget: the system resolver tries for 5 s and more); [] when it
    fails or takes longer (the lookup is left to finish on its own thread)."""
    try:
        if wait is None or _is_address(host):  # nothing to look up: no thread
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if wait <= 0:
            return []
        future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            return future.result(timeout=wait)
        except FutureTimeout:
            future.cancel()  # still queued behind slow lookups: never run for nobody
            return []
    except (OSError, UnicodeError):
        return []


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class GuardRefused(OSError):
    """No connection: the host resolves to a forbidden address, not in time, or not at all."""


def _connect_one(address: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to one address already checked (no lookup here)."""
    return socket.create_connection((address, port), timeout)


def guarded_socket(host: str, port: int, timeout: float | None) -> socket.socket:
    """A connected socket to ``host``, refusing link-local and metadata addresses both as
    resolved and as actually connected; the lookup counts against this thread's read
    deadline. Every address of the host is checked, then they are tried in turn (one that
    does not answer within ``timeout`` is passed over for the next while the deadline lasts).
    """
    watch = getattr(_current, "watch", None)
    deadline = None if watch is None else watch.deadline
    wait = None if deadline is None else deadline - time.monotonic()
    infos = _resolve(host, port, wait)
    if not infos:
        raise GuardRefused("the host name could not be resolved in time")
    if any(forbidden_address(str(info[4][0])) for info in infos):
        raise GuardRefused("refused: a link-local or metadata address")
    # connect to the addresses just checked (no second lookup: it could answer otherwise,
    # and it would not be bounded); TLS still checks the host name
    last: OSError | None = None
    for address in dict.fromkeys(str(info[4][0]) for info in infos):
        try:
            sock = _connect_one(address, port, timeout)
        except OSError as exc:  # the next address
            last = exc
            if deadline is not None and time.monotonic() >= deadline:
                break
            continue
        try:
            peer = str(sock.getpeername()[0])
        except OSError:
            peer = ""
        if forbidden_address(peer):
            sock.close()
            raise GuardRefused("refused: a link-local or metadata address")
        return sock
    raise last or GuardRefused("no address could be reached")


class _GuardedMixin:
    """urllib3's connection, made through ``guarded_socket``."""

    host: str
    port: int

    def _new_conn(self) -> socket.socket:
        timeout = self.timeout  # type: ignore[attr-defined]
        try:
            sock = guarded_socket(
                self._dns_host,  # type: ignore[attr-defined]
                self.port,
                timeout if isinstance(timeout, int | float) else None,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"connection timed out ({exc})") from None
        except OSError as exc:
            raise NewConnectionError(self, str(exc)) from None  # type: ignore[arg-type]
        for option in self.socket_options or []:  # type: ignore[attr-defined]
            sock.setsockopt(*option)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        watch = getattr(_current, "watch", None)
        if watch is not None:
            try:
                watch.attach(self)
            except TimeoutError:
                self.close()  # type: ignore[attr-defined]
                raise ConnectTimeoutError(self, "the deadline passed while connecting") from None

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = getattr(_current, "watch", None)
        if watch is not None and getattr(self, "sock", None) is not None:
            watch.attach(self)  # a kept-alive connection (a new one attaches once connected)
        super().request(*args, **kwargs)  # type: ignore[misc]


class GuardedHTTPConnection(_GuardedMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }


def guarded_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no netrc; proxies per origin below (``proxies_for``)
    # the CA bundle requests would take from the environment (hospitals with their own CA)
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    adapter = GuardedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _send_get(
    session: requests.Session, url: str, headers: dict[str, str], timeout: tuple[float, float]
) -> requests.Response:
    """A GET sent straight to the session's adapter (the SSRF guard and the metrics; the
    ``responses`` mock in tests), streamed, never redirected. Session.get would add what the
    shared session must not have (cookies, hooks, redirects, the environment merged on every
    read) and cost about 0.3 ms more a read, on the FHIR path's critical path."""
    prepared = requests.PreparedRequest()
    prepared.prepare_method("GET")
    prepared.prepare_url(url, None)
    prepared.prepare_headers({**session.headers, **headers})
    prepared.prepare_body(None, None)
    adapter = session.get_adapter(prepared.url or url)
    return adapter.send(  # type: ignore[no-any-return]
        prepared,
        stream=True,
        timeout=timeout,
        verify=session.verify,
        cert=session.cert,
        proxies=proxies_for(url),
    )


@functools.lru_cache(maxsize=64)
def _proxies_for_origin(origin: str) -> dict[str, str]:
    return requests.utils.get_environ_proxies(origin)  # type: ignore[no-untyped-call]


def proxies_for(url: str) -> dict[str, str]:
    """The proxies the environment (``HTTPS_PROXY``, ``NO_PROXY``, ...) names for ``url``'s
    origin, looked up once per origin: the environment does not change while we run."""
    parts = urlsplit(url)
    return _proxies_for_origin(f"{parts.scheme}://{parts.netloc}")


_READ_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,  # raised by read1
    http.client.HTTPException,
    OSError,
    ValueError,
    zlib.error,
)


def _failure(exc: BaseException, deadline: float) -> str:
    """What a failed read logs: the type only (messages of requests' errors quote the URL,
    and so the patient id)."""
    return "deadline passed" if time.monotonic() >= deadline else type(exc).__name__


def bounded_get(
    session: requests.Session,
    url: str,
    *,
    deadline: float,
    max_bytes: int,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """(status, body) of a GET that ends by ``deadline`` (``time.monotonic``) and reads at
    most ``max_bytes``; otherwise ``FetchFailed``. No redirects are followed.

    The read goes the direct way (``_DirectGet``) unless a proxy, a client certificate or a
    replaced requests transport asks for requests' (``_requests_get``)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchFailed("no time left in the budget")
    direct = _direct_get(session, url, deadline, max_bytes, timeout, headers)
    if direct is not None:
        return direct.sent(idle_only=False).result()
    per_read = min(timeout, remaining)
    watch = _Watch(deadline=deadline)
    _current.watch = watch
    WATCHDOG.arm(deadline, watch)
    try:
        return _requests_get(session, url, headers or {}, per_read, deadline, max_bytes)
    except _READ_ERRORS as exc:
        failure = _failure(exc, deadline)
    finally:
        WATCHDOG.disarm(watch)
        _current.watch = None
    # raised here, not in the handler, so that it carries no trace of the error (whose text
    # may quote the URL or a header, the token included) for whoever inspects it
    raise FetchFailed(failure)


def _direct_get(
    session: requests.Session,
    url: str,
    deadline: float,
    max_bytes: int,
    timeout: float,
    headers: dict[str, str] | None,
) -> _DirectGet | None:
    """The read, to go the direct way (not sent yet); None when requests' way is needed
    (``_direct``) or no time is left."""
    remaining = deadline - time.monotonic()
    adapter = _direct(session, url) if remaining > 0 else None
    if adapter is None:
        return None
    per_read = min(timeout, remaining)
    return _DirectGet(adapter, session, url, headers or {}, per_read, deadline, max_bytes)


class Sent(Protocol):
    """A GET under way (``send_get``)."""

    def result(self) -> tuple[int, bytes]:
        """``bounded_get``'s answer: (status, body), or ``FetchFailed``."""
        ...

    def discard(self) -> None:
        """Not wanted after all: its connection is closed (or left to finish on its own)."""
        ...


def send_get(
    session: requests.Session,
    url: str,
    *,
    deadline: float,
    max_bytes: int,
    timeout: float,
    headers: dict[str, str] | None = None,
    pool: Executor,
) -> Sent:
    """Start a GET now, to be read later (``result()``), so that a hook call's reads are all
    under way at once. On a kept-alive connection the request is written here and the answer
    read by ``result()`` on the caller's thread: no thread is woken, before or after. Else
    (a new connection to make, whose lookup and handshakes go on beside the others'; requests'
    way) the whole read runs on ``pool``."""
    direct = _direct_get(session, url, deadline, max_bytes, timeout, headers)
    if direct is not None and direct.sent(idle_only=True).conn is not None:
        return direct
    future = pool.submit(
        contextvars.copy_context().run,  # (its log lines carry the call's request id)
        bounded_get,
        session,
        url,
        deadline=deadline,
        max_bytes=max_bytes,
        timeout=timeout,
        headers=headers,
    )
    return _Threaded(future)


@dataclass
class _Threaded:
    future: Future[tuple[int, bytes]]

    def result(self) -> tuple[int, bytes]:
        return self.future.result()

    def discard(self) -> None:
        self.future.cancel()  # (one already running ends on its own, within the deadline)


def wait_for(read: Sent, others: Iterable[Sent]) -> None:
    """Until ``read``'s answer starts to arrive, noting when each of ``others`` (sent the direct
    way) does: each read's time, for the metrics, is then its own, not the time it waited to
    be read while the call worked on another answer."""
    if not isinstance(read, _DirectGet) or read.arrived is not None or read.conn is None:
        return
    waiting = [read, *(o for o in others if isinstance(o, _DirectGet) and o.arrived is None)]
    if len(waiting) == 1:
        return  # nothing else to time: its own read of the answer marks it
    by_fd: dict[int, _DirectGet] = {}
    poller = select.poll()
    for sent in waiting:
        sock = sent.conn.sock if sent.conn is not None else None
        if sock is not None:
            by_fd[sock.fileno()] = sent
            poller.register(sock, select.POLLIN)
    while read.arrived is None and read.conn is not None and read.conn.sock is not None:
        remaining = read.deadline - time.monotonic()
        if remaining <= 0:
            return  # (the watchdog cuts the read: its result fails)
        ready = poller.poll(remaining * 1000)
        now = time.perf_counter()
        for fd, _ in ready:
            by_fd[fd].arrived = now
            poller.unregister(fd)


def _read_body(read1: Callable[[], bytes], deadline: float, max_bytes: int) -> bytes:
    """The body, one socket read at a time (``read1``), so the deadline is checked as data
    drips and the size cap as it grows (counted decompressed: a small bomb stays small)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = read1()
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise FetchFailed(f"answer larger than {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise FetchFailed("deadline passed while reading")
        chunks.append(chunk)
    if time.monotonic() > deadline:
        raise FetchFailed("deadline passed while reading")
    return b"".join(chunks)


def _requests_get(
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    per_read: float,
    deadline: float,
    max_bytes: int,
) -> tuple[int, bytes]:
    """Through the session's adapter: urllib3's pool, with proxies and client certificates."""
    with _send_get(session, url, headers, (per_read, per_read)) as response:
        if response.status_code != 200:
            return response.status_code, b""
        return 200, _read_body(
            lambda: response.raw.read1(CHUNK, decode_content=True), deadline, max_bytes
        )


# -- the direct way -------------------------------------------------------------------------
#
# requests and urllib3 cost about 0.3 ms of CPU a read over http.client's own (building the
# request and response objects, pool and retry bookkeeping), paid under the interpreter lock
# by every read of a call at once: about 1.5 ms of a FHIR-path call against the integration
# FHIR server (bench/bench_load.py). A plain GET needs none of it, so it goes on http.client
# connections of our own: made by ``guarded_socket``, kept alive per origin, TLS verified
# against the same CA bundle as requests' (``session.verify``).

CHUNK = 65_536
#: Idle keep-alive connections kept per origin (requests keeps 10).
IDLE_PER_ORIGIN = 10
_REQUESTS_SEND = HTTPAdapter.send


def _direct(session: requests.Session, url: str) -> GuardedAdapter | None:
    """The session's adapter for ``url`` if this read can go the direct way (the adapter
    meters it), else None: not through a proxy or with a client certificate (requests
    handles those), nor when requests' transport has been replaced (a mock such as
    ``responses`` in the unit tests, an instrumentation): then it sees every read."""
    scheme = url[:8].lower()
    if not (scheme.startswith("http://") or scheme.startswith("https://")):
        return None
    adapter = session.get_adapter(url)
    direct = (
        HTTPAdapter.send is _REQUESTS_SEND
        and isinstance(adapter, GuardedAdapter)
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
        return ssl.create_default_context(cafile=requests.certs.where())
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


class _Gunzip:
    """``read1`` of a gzip-encoded body, decompressed a bounded piece at a time: several
    members are read in turn and bytes after the last are ignored, as urllib3 does. The
    compressed bytes count against ``max_bytes`` too (input that decodes to nothing must not
    be read without end)."""

    def __init__(self, response: http.client.HTTPResponse, max_bytes: int) -> None:
        self.response = response
        self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.first = True  # in the first member: an error there is an error
        self.pending = b""
        self.left = max_bytes

    def _more(self) -> bytes:
        data = self.response.read1(CHUNK)
        self.left -= len(data)
        if self.left < 0:
            raise FetchFailed("compressed answer larger than the size cap")
        return data

    def read1(self) -> bytes:
        while True:
            if self.decoder.eof:
                rest = self.decoder.unused_data or self._more()
                if not rest:
                    return b""
                self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self.first, self.pending = False, rest
            if not self.pending:
                self.pending = self._more()
                if not self.pending:
                    raise zlib.error("the compressed answer ends early")
            try:
                out = self.decoder.decompress(self.pending, CHUNK)
            except zlib.error:
                if self.first:
                    raise
                while self._more():  # not another member: what follows is ignored
                    pass
                return b""
            self.pending = self.decoder.unconsumed_tail
            if out:
                return out


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


class _DirectGet:
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
        self.watch = _Watch(deadline=deadline)
        self.conn: http.client.HTTPConnection | None = None
        self.reused = False
        self.failure: str | None = None
        self.started = 0.0
        self.observed = False
        #: ``time.perf_counter()`` when its answer was seen arriving (``wait_for``)
        self.arrived: float | None = None

    def sent(self, *, idle_only: bool) -> _DirectGet:
        """Write the request: on a kept-alive connection, else (unless ``idle_only``) on a new
        one. ``idle_only`` and none free (or the one taken broke): nothing is sent, ``conn``
        stays None, and the read may go another way."""
        self.started = time.perf_counter()
        WATCHDOG.arm(self.deadline, self.watch)
        try:
            self._send(reuse=True, connect=not idle_only)
        except _READ_ERRORS as exc:
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
        _current.watch = self.watch  # (the connection's lookup counts against the deadline)
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
            _current.watch = None

    def _fail(self, exc: BaseException) -> None:
        if self.observe is not None and not self.observed:  # (once: a status is observed)
            self.observed = True
            self.observe(
                None, time.perf_counter() - self.started, timed_out=isinstance(exc, TimeoutError)
            )
        self.failure = _failure(exc, self.deadline)
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
        except _READ_ERRORS as exc:
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
        if self.observe is not None:
            self.observed = True
            self.observe(status, (self.arrived or time.perf_counter()) - self.started)
        if status != 200:
            return status, b""
        coding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if coding in ("gzip", "x-gzip"):
            read1: Callable[[], bytes] = _Gunzip(response, self.max_bytes).read1
        elif coding == "identity":
            read1 = functools.partial(response.read1, CHUNK)
        else:
            raise ValueError("an answer in a coding that was not asked for")
        body = _read_body(read1, self.deadline, self.max_bytes)
        if response.length:  # http.client's read1 ends quietly where the server hung up
            raise http.client.IncompleteRead(b"", response.length)
        ended = response.length == 0 or (response.chunked and response.isclosed())
        if ended and not response.will_close and self.watch.detach():
            response.close()  # read to its end, not cut: ready for the next read
            _IDLE.give(self.origin, self.conn)
            self.conn = None
        return 200, body
