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
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import http.cookiejar
import ipaddress
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
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
    """The connection a request in this thread is using, for the deadline watchdog."""

    connection: HTTPConnection | None = None
    done: bool = False
    deadline: float | None = None  # time.monotonic(): the read's whole budget

    def expire(self) -> None:
        _abort(self)


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


class _GuardedMixin:
    """Refuses forbidden addresses before connecting and checks the peer after."""

    host: str
    port: int

    def _new_conn(self) -> socket.socket:
        name: str = self._dns_host  # type: ignore[attr-defined]
        watch = getattr(_current, "watch", None)
        wait = (
            None if watch is None or watch.deadline is None else watch.deadline - time.monotonic()
        )
        infos = _resolve(name, self.port, wait)
        if not infos:
            raise NewConnectionError(self, "the host name could not be resolved in time")  # type: ignore[arg-type]
        if any(forbidden_address(str(info[4][0])) for info in infos):
            raise NewConnectionError(self, "refused: a link-local or metadata address")  # type: ignore[arg-type]
        # connect to the addresses just checked (no second lookup: it could answer otherwise,
        # and it would not be bounded); TLS still checks the host name
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        last: Exception | None = None
        sock: socket.socket | None = None
        for address in addresses:
            self._dns_host = address
            try:
                sock = super()._new_conn()  # type: ignore[misc]
                break
            except (NewConnectionError, ConnectTimeoutError) as exc:  # the next address
                last = exc
                deadline = None if watch is None else watch.deadline
                if deadline is not None and time.monotonic() >= deadline:
                    break
            finally:
                self._dns_host = name
        if sock is None:
            raise last or NewConnectionError(self, "no address could be reached")  # type: ignore[arg-type]
        try:
            peer = str(sock.getpeername()[0])
        except OSError:
            peer = ""
        if forbidden_address(peer):
            sock.close()
            raise NewConnectionError(self, "refused: a link-local or metadata address")  # type: ignore[arg-type]
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.connection = self
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


def _abort(watch: _Watch) -> None:
    """Deadline passed: cut the connection so a blocked read returns now."""
    connection = watch.connection
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


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
    most ``max_bytes``; otherwise ``FetchFailed``. No redirects are followed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchFailed("no time left in the budget")
    watch = _Watch(deadline=deadline)
    _current.watch = watch
    WATCHDOG.arm(deadline, watch)
    try:
        per_read = min(timeout, remaining)
        with _send_get(session, url, headers or {}, (per_read, per_read)) as response:
            if response.status_code != 200:
                return response.status_code, b""
            chunks: list[bytes] = []
            size = 0
            while True:
                # read1: one socket read at most, so the deadline is checked as data drips
                chunk = response.raw.read1(65_536, decode_content=True)
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
            return 200, b"".join(chunks)
    except (
        requests.RequestException,
        urllib3.exceptions.HTTPError,  # raised by read1
        http.client.HTTPException,
        OSError,
        ValueError,
    ) as exc:
        if time.monotonic() >= deadline:
            raise FetchFailed("deadline passed") from None
        # the type only: messages of requests' errors quote the URL (and so the patient id)
        raise FetchFailed(type(exc).__name__) from None
    finally:
        WATCHDOG.disarm(watch)
        _current.watch = None
