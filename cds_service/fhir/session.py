"""The guarded ``requests`` session: urllib3 connections made through ``addresses``.

It keeps no cookies (one session serves every caller: a cookie set for one user's call must
never ride along with another's), never reads ``~/.netrc`` (its credentials would replace the
caller's token), and reads the proxy and CA-bundle environment once, not on every read
(requests would otherwise scan the environment and stat files for each one: about half a
millisecond).
"""

from __future__ import annotations

import functools
import http.cookiejar
import os
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .addresses import check_before_proxy, current, guarded_socket


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
        watch = getattr(current, "watch", None)
        if watch is not None:
            try:
                watch.attach(self)
            except TimeoutError:
                self.close()  # type: ignore[attr-defined]
                raise ConnectTimeoutError(self, "the deadline passed while connecting") from None

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = getattr(current, "watch", None)
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


def send_through_adapter(
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
    proxies = proxies_for(url)
    if proxies:  # the proxy resolves the name: check it here first (``check_before_proxy``)
        parts = urlsplit(url)
        default = 443 if parts.scheme == "https" else 80
        check_before_proxy(parts.hostname or "", parts.port or default)
    return adapter.send(
        prepared,
        stream=True,
        timeout=timeout,
        verify=session.verify,
        cert=session.cert,
        proxies=proxies,
    )


@functools.lru_cache(maxsize=64)
def _proxies_for_origin(origin: str) -> dict[str, str]:
    return requests.utils.get_environ_proxies(origin)


def proxies_for(url: str) -> dict[str, str]:
    """The proxies the environment (``HTTPS_PROXY``, ``NO_PROXY``, ...) names for ``url``'s
    origin, looked up once per origin: the environment does not change while we run."""
    parts = urlsplit(url)
    return _proxies_for_origin(f"{parts.scheme}://{parts.netloc}")
