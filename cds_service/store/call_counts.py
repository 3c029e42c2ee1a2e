"""How many hook calls the service answered and how many orders it judged, per hour: the
denominator the committee's report divides the cards by (cards per 1,000 orders evaluated).

A call adds to counters in memory (a dictionary update under a lock: no database work on the
hook path). A background thread writes them every ``FLUSH_SECONDS`` as rows of
``hook_calls`` (one per hour, hook, service and drug: the report adds them up, so replicas
and workers never update each other's rows), and once more at exit. While the database is
down the counts stay in memory and are written when it is back; they are a few numbers per
hour, bounded by ``MAX_KEYS``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..core.lifetimes import at_exit
from .tables import hook_calls_table

log = logging.getLogger("cds_service.call_counts")

#: Seconds between writes of the counts.
FLUSH_SECONDS = 60.0
#: Counters kept at most while the database is down (hours x hooks x services x drugs);
#: past it the oldest hours are dropped (and logged).
MAX_KEYS = 20_000

Key = tuple[datetime, str, str, str]  # hour, hook, service id, drug ("": every order)


def this_hour(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


class CallCounts:
    def __init__(self, engine: Engine, *, background: bool = True) -> None:
        self.engine = engine
        self.background = background
        self._counts: dict[Key, list[int]] = {}  # key -> [calls, orders]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._exit_hook = False

    def count(
        self,
        hook: str,
        service_id: str,
        orders: int,
        drugs: Mapping[str, int] | None = None,
        now: datetime | None = None,
    ) -> None:
        """One call of ``hook`` to ``service_id`` that judged ``orders`` orders, of which
        ``drugs`` (covered drug -> orders) named a drug the knowledge covers."""
        hour = this_hour(now)
        hook, service_id = hook[:50], service_id[:100]
        with self._lock:
            for drug, n in [("", orders), *(drugs or {}).items()]:
                counts = self._counts.setdefault((hour, hook, service_id, drug[:100]), [0, 0])
                counts[0] += 1
                counts[1] += n
            if len(self._counts) > MAX_KEYS:
                self._drop_oldest()
        if self.background:
            self._start()

    def _drop_oldest(self) -> None:
        oldest = min(k[0] for k in self._counts)
        for key in [k for k in self._counts if k[0] == oldest]:
            del self._counts[key]
        log.error("call counts: the database was away too long; the counts of %s dropped", oldest)

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="call-counts", daemon=True)
                self._thread.start()
                if not self._exit_hook:
                    self._exit_hook = True
                    at_exit(self.close)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """At exit (or when the app is closed): write the counts and end the thread (a later
        count starts another)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stop = True
            self._wake.set()
            thread.join(2.0)
            self._stop = False
        self.flush()

    def flush(self) -> bool:
        """Write the counts gathered so far; False (and kept) if the database refused."""
        with self._lock:
            taken, self._counts = self._counts, {}
        if not taken:
            return True
        rows = [
            {
                "hour": hour,
                "hook": hook,
                "service_id": service,
                "drug": drug,
                "calls": calls,
                "orders": orders,
            }
            for (hour, hook, service, drug), (calls, orders) in taken.items()
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(hook_calls_table), rows)
        except SQLAlchemyError as exc:
            log.warning("call counts: not written now (%s); kept", type(exc).__name__)
            with self._lock:
                for key, (calls, orders) in taken.items():
                    counts = self._counts.setdefault(key, [0, 0])
                    counts[0] += calls
                    counts[1] += orders
            return False
        return True
