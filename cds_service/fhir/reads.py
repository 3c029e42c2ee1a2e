"""One outbound read within its bounds, and the reads of a hook call sent all at once.

``bounded_get`` reads one response within a deadline shared by all reads of a hook call
(socket timeouts apply per read: a server dripping one byte a second would otherwise hold
the call for ever) and stops at a size cap (an endless stream must not fill memory).
``send_get`` starts a read now, to be taken later, so that a call's reads are under way
together.

A read goes one of two ways, with the same guard (``addresses.guarded_socket``), deadline and
cap: the direct way (``direct.DirectGet``: http.client connections of our own, kept alive per
origin), or requests' (``_requests_get``, through ``session.guarded_session``) for a proxy, a
client certificate, or when requests' transport has been replaced (the ``responses`` mock of
the unit tests, an instrumentation).
"""

from __future__ import annotations

import contextvars
import select
import time
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Protocol

import requests

from ..core.deadlines import WATCHDOG
from ..core.inline import would_wait
from .addresses import Watch, current
from .direct import DirectGet, direct_adapter
from .limits import CHUNK, READ_ERRORS, FetchFailed, failure_text, read_body
from .session import send_through_adapter


def bounded_get(
    session: requests.Session,
    url: str,
    *,
    deadline: float,
    max_bytes: int,
    timeout: float,
    headers: dict[str, str] | None = None,
    answer_headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """(status, body) of a GET that ends by ``deadline`` (``time.monotonic``) and reads at
    most ``max_bytes``; otherwise ``FetchFailed``. No redirects are followed. The answer's
    headers (names in lower case) are put in ``answer_headers`` when it is given.

    The read goes the direct way (``DirectGet``) unless a proxy, a client certificate or a
    replaced requests transport asks for requests' (``_requests_get``)."""
    would_wait("a read on the network")  # (on the worker's loop: served on a thread instead)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchFailed("no time left in the budget")
    direct = _direct_get(session, url, deadline, max_bytes, timeout, headers)
    if direct is not None:
        direct.answer_headers = answer_headers
        return direct.sent(idle_only=False).result()
    per_read = min(timeout, remaining)
    watch = Watch(deadline=deadline)
    current.watch = watch
    WATCHDOG.arm(deadline, watch)
    try:
        return _requests_get(
            session, url, headers or {}, per_read, deadline, max_bytes, answer_headers
        )
    except READ_ERRORS as exc:
        failure = failure_text(exc, deadline)
    finally:
        WATCHDOG.disarm(watch)
        current.watch = None
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
) -> DirectGet | None:
    """The read, to go the direct way (not sent yet); None when requests' way is needed
    (``direct_adapter``) or no time is left."""
    remaining = deadline - time.monotonic()
    adapter = direct_adapter(session, url) if remaining > 0 else None
    if adapter is None:
        return None
    per_read = min(timeout, remaining)
    return DirectGet(adapter, session, url, headers or {}, per_read, deadline, max_bytes)


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
    would_wait("a read on the network")
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
    if not isinstance(read, DirectGet) or read.arrived is not None or read.conn is None:
        return
    waiting = [read, *(o for o in others if isinstance(o, DirectGet) and o.arrived is None)]
    if len(waiting) == 1:
        return  # nothing else to time: its own read of the answer marks it
    by_fd: dict[int, DirectGet] = {}
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


def _requests_get(
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    per_read: float,
    deadline: float,
    max_bytes: int,
    answer_headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """Through the session's adapter: urllib3's pool, with proxies and client certificates."""
    with send_through_adapter(session, url, headers, (per_read, per_read)) as response:
        if answer_headers is not None:
            answer_headers.update({k.lower(): v for k, v in response.headers.items()})
        if response.status_code != 200:
            return response.status_code, b""
        return 200, read_body(
            lambda: response.raw.read1(CHUNK, decode_content=True), deadline, max_bytes
        )
