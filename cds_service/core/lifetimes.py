"""Process hooks that do not keep their objects alive.

A part of the service registers what it must do in a forked child (gunicorn forks after
``create_app``) or at exit. ``os.register_at_fork`` and ``atexit`` keep what they are given
for the life of the process, and a bound method keeps its object, and with it a database
engine, threads and caches: harmless for the one app a server process makes, a leak for a
process that makes many (the test suite makes about a thousand). These hooks hold the object
weakly: once it is no longer used it is collected and its hook does nothing.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Callable


def _weakly(method: Callable[[], object]) -> Callable[[], None]:
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


def after_fork_in_child(method: Callable[[], object]) -> None:
    """Call ``method`` (a bound method) in each forked child while its object lives."""
    os.register_at_fork(after_in_child=_weakly(method))


def at_exit(method: Callable[[], object]) -> None:
    """Call ``method`` (a bound method) at exit if its object still lives."""
    atexit.register(_weakly(method))
