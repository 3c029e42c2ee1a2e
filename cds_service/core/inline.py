"""Requests served on the worker's own event loop, handed to a request thread where one
would wait.

Handing a request from the worker's loop to a request thread and back costs more on a
small virtual machine than the service's whole work on a hook call that carries its data
(about 0.3 ms of CPU: a thread woken, a future, the loop woken again, the interpreter lock
passed to and fro; ``docs/performance.md``). So ``web/gather.py`` serves a complete hook
call on the loop itself. Such a call must never wait on the network there: every other
caller of the worker would wait with it. Code that is about to (a FHIR read, an issuer's
key set) calls ``would_wait`` first; on the loop it raises ``HandOff``, and the worker
serves the request again from its first byte on a request thread, where waiting is what
threads are for. What the first attempt settled that must not be done twice (the client's
token, whose ``jti`` is then recorded as used) travels with it (``settle``/``settled``).

Off the loop (request threads, the command line, tests) ``would_wait`` does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class HandOff(BaseException):
    """A request served on the loop is about to wait (``why``): serve it on a thread.
    A ``BaseException``: no handler on the way may take it for a fault and answer."""

    def __init__(self, why: str, carried: dict[str, Any]) -> None:
        super().__init__(why)
        self.carried = carried


class _State(threading.local):
    on_loop = False
    settled: dict[str, Any] | None = None


_STATE = _State()


@contextmanager
def on_loop() -> Iterator[None]:
    """While a request is served on the worker's loop (this thread)."""
    _STATE.on_loop, _STATE.settled = True, {}
    try:
        yield
    finally:
        _STATE.on_loop, _STATE.settled = False, None


@contextmanager
def carrying(carried: dict[str, Any] | None) -> Iterator[None]:
    """While a request handed off by the loop is served again (this thread), with what its
    first attempt settled."""
    _STATE.settled = dict(carried or {})
    try:
        yield
    finally:
        _STATE.settled = None


def would_wait(why: str) -> None:
    """Called before waiting on the network: on the loop, hands the request to a thread."""
    if _STATE.on_loop:
        raise HandOff(why, dict(_STATE.settled or {}))


def settle(key: str, value: Any) -> None:
    """Record what this request settled, for a second attempt on a thread."""
    if _STATE.settled is not None:
        _STATE.settled[key] = value


def settled(key: str) -> Any:
    """What the first attempt of this request settled under ``key`` (None: nothing)."""
    return _STATE.settled.get(key) if _STATE.settled is not None else None
