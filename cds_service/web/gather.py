"""Requests gathered on the worker's event loop before a request thread sees them.

gunicorn's threaded worker hands each new connection to one of its few request threads,
which then waits for the request: 16 connections that send nothing, or 32 that drip their
headers a byte at a time, held every thread of a 2-worker server, and ``/healthz`` (the
Kubernetes liveness probe) waited 14 s or timed out. No gunicorn setting changes that (its
threads read with blocking sockets; ``timeout`` watches the worker, not a request), and
the other worker classes do not fit: ``sync`` serves one connection at a time, ``gevent``
and ``eventlet`` patch the whole process (the FHIR reads, the deadline watchdog and the card
log's writer are real threads). waitress gathers requests this way but serves one process
with no deadline for a request's head, so a dripping client stays for ever.

So the worker's own event loop (which already waits on kept-alive connections) reads each
request, its head and its body, without blocking, and only a complete request goes to a
thread, with its bytes (gunicorn's parser reads them from its buffer, as it would from the
socket). A connection is given ``HEAD_TIMEOUT_S`` for its head and ``READ_TIMEOUT_S`` for
the whole request; past them it is closed (a head) or answered ``408`` (a body). At most
``MAX_PER_CLIENT`` connections of one client address are gathered at once per worker
(another is closed at once), and the worker holds at most ``worker_connections`` in all
(gunicorn's own setting). ``GET /healthz`` is answered on the loop itself: liveness does not
wait for a request thread.

What the loop does not understand it hands over as soon as the head is complete (two
``Content-Length``s, a transfer coding other than chunked...): gunicorn's parser refuses
those from the head alone, with the JSON answers of ``server.py``. A body announced larger
than the app's limit is handed over too: the app answers 413 without reading it.

A hook call that arrived whole (``POST /cds-services/<id>``, its body framed by
``Content-Length``) is served on the loop itself, not on a request thread: handing it over
and back costs more CPU than the call's own work when the EHR sends its data in prefetch
(``core/inline.py``). Where such a call would wait on the network (a FHIR read, an issuer's
key set) it is handed to a request thread after all and served again from its first byte.
Every connection's answer must be taken within ``ANSWER_TIMEOUT_S`` (the kernel's send and
receive timeouts, set once when it is accepted): a client that does not read is cut off,
never waited for, by the loop or by a thread. Everything else (feedback, which waits for the
database; readiness; a second request the client sent behind the first) goes to a request
thread as before.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import selectors
import socket
import struct
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from ..core import inline

log = logging.getLogger("cds_service")

#: Seconds a connection has to send a request's head (request line and headers), counted
#: from its first byte, or from its accept for a new connection.
HEAD_TIMEOUT_S = 5.0
#: Seconds a connection has to send a whole request, head and body. A hook request of a few
#: hundred kilobytes takes milliseconds on a hospital network.
READ_TIMEOUT_S = 10.0
#: Connections of one client address gathered at once, per worker. Behind a load balancer
#: every connection comes from its address, but it sends requests whole: few wait here.
MAX_PER_CLIENT = 64
#: The largest request head (gunicorn's own limits refuse most before: a request line of
#: 4 KB, 100 fields of 8 KB); a larger one is answered 431 here.
MAX_HEAD = 64 * 1024
#: The largest body gathered (the app's limit, ``app.MAX_BODY``); one announced larger is
#: handed over for the app to refuse without reading it.
MAX_BODY = 5 * 1024 * 1024
_RECV = 256 * 1024
#: Seconds a client may leave its answer unread once the buffers on the way are full (and a
#: socket read of what it announced may wait): it is then cut off, never waited for.
ANSWER_TIMEOUT_S = 1.0
#: A hook call (not its feedback): served on the loop when it arrived whole.
_HOOK_CALL = re.compile(rb"POST /cds-services/[^/?\s]+(?:\?\S*)? HTTP/1\.[01]\r\n")

_HEALTHZ = (b"GET /healthz HTTP/1.1", b"GET /healthz HTTP/1.0")
#: A header field gunicorn would take as it is: a token, a colon, visible text.
_PLAIN_FIELD = re.compile(
    rb"(?<![!#$%&'*+\-.^_`|~0-9A-Za-z])[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*"
)
_HEALTHY = json.dumps({"status": "ok"}).encode()


def http_error(status: int, message: str) -> bytes:
    """A complete answer that closes the connection: JSON like every error of the service."""
    body = json.dumps({"error": message}).encode()
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body


@dataclass
class Request:
    """One request being gathered: its bytes so far and what its head announced."""

    started: float
    data: bytearray = field(default_factory=bytearray)
    head_end: int = -1  # index just past the head's blank line, once it has arrived
    body_length: int | None = None  # Content-Length
    chunked: ChunkedBody | None = None
    continue_sent: bool = False
    framed: bool = False  # the head's framing was ours to judge (``_read_head``)

    def feed(self, data: bytes) -> bool:
        """Take the bytes that arrived; True once the request is whole (or is to be handed
        over as it is)."""
        self.data += data
        if self.head_end < 0:
            end = self.data.find(b"\r\n\r\n", max(0, len(self.data) - len(data) - 3))
            if end < 0:
                return False
            self.head_end = end + 4
            self.framed = self._read_head(bytes(self.data[: self.head_end]))
            if not self.framed:
                return True  # not ours to judge: gunicorn's parser refuses or reads it
            if self.chunked is not None:
                return self.chunked.feed(self.data, self.head_end)
        elif self.chunked is not None:
            return self.chunked.feed(self.data, len(self.data) - len(data))
        return self.body_length is None or len(self.data) - self.head_end >= self.body_length

    def _read_head(self, head: bytes) -> bool:
        """Content-Length or chunked, from a head; False when it is to be handed over now."""
        lowered = head.lower()
        lengths = lowered.count(b"\r\ncontent-length:")
        coding = _field(lowered, b"transfer-encoding")
        if coding is not None:
            if lengths or coding.rsplit(b",", 1)[-1].strip() != b"chunked":
                return False  # gunicorn refuses these
            self.chunked = ChunkedBody()
        elif lengths == 1:
            value = _field(lowered, b"content-length") or b""
            if not value.isdigit() or int(value) > MAX_BODY:
                return False  # refused (400), or refused unread (413)
            self.body_length = int(value)
        elif lengths > 1:
            return False
        return True

    @property
    def complete(self) -> bool:
        """Its head and a body framed by ``Content-Length`` (or none) have arrived whole."""
        if not self.framed or self.chunked is not None:
            return False
        return self.body_length is None or len(self.data) - self.head_end >= self.body_length

    def expects_continue(self) -> bool:
        """The client waits for ``100 Continue`` before it sends the body."""
        head = bytes(self.data[: self.head_end]).lower()
        return _field(head, b"expect") == b"100-continue" and b" http/1.1\r\n" in head[:8200]


def _field(lowered_head: bytes, name: bytes) -> bytes | None:
    """The value of the first field ``name`` in a lower-cased head, stripped."""
    start = lowered_head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    return lowered_head[start : lowered_head.find(b"\r\n", start)].strip()


class ChunkedBody:
    """The framing of a chunked body (RFC 9112 section 7.1), followed as its bytes arrive,
    to know when it ends. Its content is not kept here: gunicorn's parser decodes it."""

    def __init__(self) -> None:
        self.at = -1  # where the next framing element starts (-1: at the body's start)
        self.size = 0  # the body's decoded size so far

    def feed(self, data: bytearray, start: int) -> bool:
        """True once the last chunk and the trailer section have arrived, or the framing
        is wrong or larger than ``MAX_BODY`` (for gunicorn's parser or the app to refuse)."""
        if self.at < 0:
            self.at = start
        while True:
            line_end = data.find(b"\r\n", self.at)
            if line_end < 0:
                return len(data) - self.at > 1024  # a chunk-size line this long is wrong
            size_text = bytes(data[self.at : line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return True  # malformed: refused by the parser
            if size == 0:
                return self._trailers_end(data, line_end + 2)
            if len(data) < line_end + 2 + size + 2:
                return False
            self.size += size
            if self.size > MAX_BODY:
                return True
            self.at = line_end + 2 + size + 2

    def _trailers_end(self, data: bytearray, at: int) -> bool:
        if data.startswith(b"\r\n", at):
            return True
        return data.find(b"\r\n\r\n", at) >= 0


class GatheringWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, whose loop gathers each request (see the module's text)."""

    def init_process(self) -> None:
        self.gathering: dict[Any, tuple[TConn, Request, Any]] = {}  # socket -> ...
        self.per_client: Counter[str] = Counter()
        super().init_process()

    # -- connections come in ---------------------------------------------------------------

    def accept(self, listener: Any) -> None:
        try:
            sock, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        client = _client(address)
        if self.per_client[client] >= MAX_PER_CLIENT:
            log.warning("too many connections from one client address: one closed")
            sock.close()
            return
        self.nr_conns += 1
        bound_waits(sock, ANSWER_TIMEOUT_S)
        self._gather(TConn(self.cfg, sock, address, listener.getsockname()), Request(_now()))

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        """A kept-alive connection has bytes: its next request is gathered like a first."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._gather(conn, Request(_now()), readable=True)

    def _gather(
        self, conn: TConn, request: Request, data: bytes = b"", readable: bool = False
    ) -> None:
        """Gather ``conn``'s request (``data``: what already arrived). ``readable``: it has
        bytes now, read at once (most requests arrive in one piece: no poller round)."""
        conn.sock.setblocking(False)
        client = _client(conn.client)
        self.per_client[client] += 1
        self.gathering[conn.sock] = (conn, request, client)
        if data and self._take(conn, request, data):
            return
        if readable and self._readable(conn, conn.sock, registered=False):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _readable(self, conn: TConn, sock: Any, registered: bool = True) -> bool:
        """Read what arrived; True when the connection has left the gathering."""
        request = self.gathering[sock][1]
        try:
            data = sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:  # the client left
            if request.data:
                log.debug("a client left before its request was complete")
            self._end(conn, registered=registered)
            return True
        if self._take(conn, request, data, registered=registered):
            return True
        if request.head_end >= 0 and not request.continue_sent and request.expects_continue():
            request.continue_sent = True
            self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        return False

    def _take(self, conn: TConn, request: Request, data: bytes, registered: bool = False) -> bool:
        """Feed ``data``; True when the connection has left the gathering (handed over,
        answered or closed)."""
        whole = request.feed(data)
        if not whole and request.head_end < 0 and len(request.data) > MAX_HEAD:
            self._end(conn, http_error(431, "the request headers are too large"), registered)
            return True
        if not whole:
            return False
        self._stop(conn, registered)
        raw = bytes(request.data)
        if len(raw) == request.head_end and _is_healthz(raw):
            self._answer_healthz(conn)
            return True
        conn.gathered = raw
        conn.data_ready = True  # (gunicorn's thread must not wait for data first)
        if not self._on_loop and request.complete and _served_on_loop(raw) and not self.cfg.is_ssl:
            self._serve_on_loop(conn, raw)
        else:
            self.enqueue_req(conn)
        return True

    _on_loop = False  # a request is being served on the loop (the next one goes to a thread)

    def _serve_on_loop(self, conn: TConn, raw: bytes) -> None:
        """Serve a whole hook call here, unless it would wait (``core/inline.py``): then on a
        request thread, from its first byte, with what this attempt settled."""
        done: Future[Any] = Future()
        self._on_loop = True
        try:
            try:
                with inline.on_loop():
                    done.set_result(self.handle(conn))
            except inline.HandOff as handoff:
                log.debug("a hook call is served on a request thread: %s", handoff)
                conn.parser, conn.initialized = None, False  # (read again, by a new parser)
                conn.gathered, conn.carried = raw, handoff.carried
                self.enqueue_req(conn)
                return
            self.finish_request(conn, done)
        finally:
            self._on_loop = False

    def _answer_healthz(self, conn: TConn) -> None:
        """Liveness, from the loop: this worker accepts and reads connections."""
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(_HEALTHY), _HEALTHY)
        )
        self._send(conn, answer)
        self.nr_conns -= 1
        conn.close()

    # -- and leave -------------------------------------------------------------------------

    def _stop(self, conn: TConn, registered: bool = True) -> None:
        """No longer gathered (the poller lets go of it)."""
        _, _, client = self.gathering.pop(conn.sock)
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]
        if registered:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)

    def _end(self, conn: TConn, answer: bytes = b"", registered: bool = True) -> None:
        """Closed, after ``answer`` if there is one (written only as far as the socket takes
        it at once: the loop never waits for a client)."""
        self._stop(conn, registered)
        if answer:
            self._send(conn, answer)
        self.nr_conns -= 1
        conn.close()

    @staticmethod
    def _send(conn: TConn, data: bytes) -> None:
        with contextlib.suppress(OSError):
            conn.sock.send(data)

    def murder_pending(self) -> None:
        """(Called by gunicorn's loop about once a second.) Connections past their deadline
        are closed: one without a whole head silently, one inside its body with a 408. A
        stopping worker closes every connection still being gathered."""
        super().murder_pending()
        now = _now()
        for conn, request, _ in list(self.gathering.values()):
            if not self.alive:
                self._end(conn)
            elif request.head_end < 0 and now - request.started > HEAD_TIMEOUT_S:
                log.info("a request's head did not arrive within %g s: closed", HEAD_TIMEOUT_S)
                self._end(conn)
            elif now - request.started > READ_TIMEOUT_S:
                log.info("a request did not arrive within %g s: 408", READ_TIMEOUT_S)
                message = f"the request body did not arrive within {READ_TIMEOUT_S:g} s"
                self._end(conn, http_error(408, message))

    # -- on the request thread -------------------------------------------------------------

    def handle(self, conn: TConn) -> Any:
        """gunicorn's, reading the gathered bytes first (its parser takes them from its
        buffer before the socket: a request whole, or what it refuses from the head)."""
        gathered = conn.__dict__.pop("gathered", b"")
        if gathered:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(gathered)
        carried = conn.__dict__.pop("carried", None)  # (handed over by the loop)
        if not carried:
            return super().handle(conn)
        with inline.carrying(carried):
            return super().handle(conn)

    def finish_request(self, conn: TConn, fs: Any) -> None:
        """A kept-alive connection whose client already sent (part of) its next request: the
        bytes gunicorn's parser read ahead are gathered with the rest, not read on a thread."""
        try:
            keep = not fs.cancelled() and fs.result() is True
        except Exception:
            keep = False
        if keep and self.alive and conn.parser is not None:
            ahead = conn.parser.unreader.take_buffered()
            if ahead:
                self._gather(conn, Request(_now()), ahead)
                return
        super().finish_request(conn, fs)


def _served_on_loop(raw: bytes) -> bool:
    """A hook call, unless it names a FHIR server and sends no prefetch: that one reads the
    FHIR server (when a covered drug is ordered), so it goes to a request thread at once
    rather than after work done in vain (anything else that would wait is handed off)."""
    if _HOOK_CALL.match(raw) is None:
        return False
    return b'"prefetch"' in raw or b'"fhirServer"' not in raw


def _is_healthz(head: bytes) -> bool:
    """A plain ``GET /healthz`` without a body (anything unusual goes to gunicorn's parser,
    which refuses what is malformed)."""
    lines = head[:-4].split(b"\r\n")
    return lines[0] in _HEALTHZ and all(_PLAIN_FIELD.fullmatch(line) for line in lines[1:])


def bound_waits(sock: socket.socket, seconds: float) -> None:
    """The socket's blocking sends and receives give up after ``seconds`` without progress
    (the kernel's own timeouts: they hold whether Python or gunicorn made it blocking)."""
    value = struct.pack("@ll", int(seconds), int(seconds % 1 * 1_000_000))
    with contextlib.suppress(OSError):  # (a socket the client already closed)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)


def _client(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else "unix"


def _now() -> float:
    return time.monotonic()
