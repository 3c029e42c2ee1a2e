"""A deadline for receiving a request (headers and body) under ``pgx-cds serve``.

A gunicorn thread reads a request from a blocking socket. A client that sends its headers or
its body slowly, or stops part-way and keeps the connection open, would hold the thread for as
long as it likes: four such connections and a worker of four threads answers nobody
(slowloris). Socket timeouts do not help: they apply per read, and a client sending a byte a
second never trips them.

So the worker (``server.py``) starts a deadline when it takes a connection to read a request,
``READ_TIMEOUT_S`` in all. Past it the socket's read side is shut: a blocked read returns at
once with what has arrived, the answer can still be written, and the connection is closed
afterwards. Headers not complete by then: the connection is closed. A body not complete by
then: the app answers ``408`` (``expired``). The app calls ``finish`` once it has read the
body: the time the answer takes does not count.

Outside ``pgx-cds serve`` (tests, another WSGI server) nothing is started, and ``finish`` and
``expired`` do nothing.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..core.deadlines import WATCHDOG

#: Seconds a client has to send a request, headers and body, from the moment a worker thread
#: takes its connection. A hook request of a few hundred kilobytes takes milliseconds on a
#: hospital network; the load balancer in front usually buffers the request anyway.
READ_TIMEOUT_S = 10.0

_current = threading.local()


@dataclass
class RequestRead:
    """One request being received on ``connection`` (gunicorn's, with its ``sock``);
    ``request``: gunicorn's request, once its headers are read."""

    connection: Any
    request: Any = None
    done: bool = False
    expired: bool = False

    def expire(self) -> None:
        """From the watchdog's thread: the read side is shut, so a read blocked in the
        worker's thread returns now (and any later one at once); writing still works, and
        the answer says ``Connection: close``."""
        self.expired = True
        if self.request is not None:
            self.request.must_close = True
        sock = getattr(self.connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # closed meanwhile
                sock.shutdown(socket.SHUT_RD)


def start(connection: Any, seconds: float = READ_TIMEOUT_S) -> RequestRead:
    """The worker's thread is about to read a request from ``connection``."""
    read = RequestRead(connection)
    _current.read = read
    WATCHDOG.arm(time.monotonic() + seconds, read)
    return read


def current() -> RequestRead | None:
    """The request being received in this thread, if a deadline was started."""
    read: RequestRead | None = getattr(_current, "read", None)
    return read


def finish() -> None:
    """The request is read (or the thread is done with it): the deadline no longer applies."""
    read = current()
    if read is not None:
        WATCHDOG.disarm(read)
        _current.read = None


def expired() -> bool:
    """Whether the request being read in this thread ran past its deadline."""
    read = current()
    return read is not None and read.expired
