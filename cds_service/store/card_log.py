"""The card log: every card the service issues, without patient identifiers in clear.

One row per card (its uuid, when, hook and service, drug, genes, phenotype, recommendation,
indicator, knowledge version, whether it was shown), with keyed hashes (HMAC-SHA256) of the
patient and of the order so repeated cards can be counted and suppressed without anyone being
identified. The key is random, made once and kept in the database, so every replica hashes
alike; ``PGX_CDS_HASH_KEY`` sets it explicitly.

Feedback refers to these rows: an override with a reason marks the card's advice for that
order as overridden, and the same advice for the same order is not shown again within the
ordering session: the same draft order, clinician and encounter, within ``SESSION`` (the
public sandbox gives every draft the same id, and many testers share its patients).

Logging a card never fails a hook call and never delays it: rows are written by a background
writer (flushed at exit); a database fault is logged and the cards are still returned. A fault
on the hook path (the override check) pauses that check for ``DOWN_SECONDS``, not the logging:
the writer still gets every card once the key is known. The
check for earlier overrides asks the database only when some card was overridden recently
(known to every replica within ``OVERRIDE_CHECK_SECONDS``).

Feedback may reach a replica before the card it is about has been written by another
replica's writer; ``link_feedback`` joins the two whichever is stored second.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..core.trace import Trace
from .db_guard import Bounded
from .tables import as_utc, card_log_table, feedback_table, service_key_table

log = logging.getLogger("cds_service.card_log")

#: How long an override silences the same advice for the same order in the same session.
SESSION = timedelta(hours=1)
OVERRIDE_CHECK_SECONDS = 1.0
DOWN_SECONDS = 15.0
#: The longest a hook call waits for the card log's database (it answers in milliseconds):
#: then it goes on without the check, as when the database is down.
HOOK_DB_SECONDS = 0.5
#: At most this many calls' cards in one write.
WRITE_BATCH = 100
#: The writer gathers the cards of the calls made within this long into one write (sooner
#: when asked to flush): its database work, a few tenths of a millisecond of CPU a write, is
#: then paid once for many calls, not at the start of each next call, where it would hold
#: the interpreter lock while that call builds its FHIR reads.
WRITE_DELAY = 0.2


#: When a card was last overridden: asked on the hook path, answered from the index above.
LATEST_OVERRIDE = select(func.max(card_log_table.c.overridden_at))


@dataclass(frozen=True)
class IssuedCard:
    """What the log keeps about one card (set by ``clinical.cards`` for every card it builds)."""

    uuid: str
    drug: str
    genes: str
    phenotype: str
    recommendation_id: str
    indicator: str
    order_reference: str | None


def ordering_session(context: dict[str, Any]) -> str:
    """Who orders in which encounter (``userId``, ``encounterId``): an override suppresses
    the same advice only for them, not for another clinician or encounter."""
    return "\x1f".join(str(context.get(k) or "") for k in ("userId", "encounterId"))


class CardLog:
    def __init__(self, engine: Engine, key: str | None = None, *, background: bool = True) -> None:
        self.engine = engine
        self._key = key.encode() if key else None
        self._latest_override: tuple[float, datetime | None] = (0.0, None)
        self._queue: queue.Queue[list[dict[str, Any]] | None] | None = None
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hurry = threading.Event()  # flush: write what is queued now, not after the delay
        self.background = background
        self._down_until = 0.0  # after a database fault, hook calls skip it for a while
        self._bounded = Bounded(engine, "card-log")
        #: told the key once it is known (the log's patient references are keyed from it)
        self.on_key: Callable[[bytes], None] | None = None

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _fault(self, exc: Exception, what: str, trace: Trace) -> None:
        self._down_until = time.monotonic() + DOWN_SECONDS
        log.warning("card log unavailable (%s): %s", type(exc).__name__, what)
        trace.add("card log", f"the database is unavailable: {what}")

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(card_log_table), rows)
        except SQLAlchemyError as exc:
            log.warning(
                "card log unavailable (%s): %d card(s) not logged", type(exc).__name__, len(rows)
            )
            return
        # feedback about these cards may have reached another replica while they were queued
        if self.link_feedback([r["card_uuid"] for r in rows]):
            self.forget_cache()

    def link_feedback(self, card_uuids: list[str]) -> bool:
        """Join feedback that was stored before its card to the card.

        A card is written in the background. Feedback about it can reach another replica in
        that moment, find no card and be stored as about an unknown card. This links it: the
        feedback counts as about a known card, and an override with a reason marks the card
        overridden. The card writer runs it after each write, and the feedback store for each
        item it could not link; each runs after its own commit, so whichever of the two is
        stored second sees the other. True when a card was marked overridden.
        """
        if not card_uuids:
            return False
        f, c = feedback_table.c, card_log_table.c
        try:
            with self.engine.begin() as conn:
                early = conn.execute(
                    select(f.card_uuid, f.outcome, f.override_reason_code, f.received_at).where(
                        f.card_uuid.in_(card_uuids), f.card_known.is_(False)
                    )
                ).all()
                if not early:
                    return False
                known = set(
                    conn.execute(
                        select(c.card_uuid).where(c.card_uuid.in_({r[0] for r in early}))
                    ).scalars()
                )
                if not known:
                    return False
                conn.execute(
                    update(feedback_table)
                    .where(f.card_uuid.in_(known), f.card_known.is_(False))
                    .values(card_known=True)
                )
                overridden: dict[str, datetime] = {}
                for uuid, outcome, reason, received in early:
                    if uuid in known and outcome == "overridden" and reason:
                        overridden[uuid] = min(received, overridden.get(uuid, received))
                for uuid, received in overridden.items():
                    conn.execute(
                        update(card_log_table)
                        .where(c.card_uuid == uuid, c.overridden_at.is_(None))
                        .values(overridden_at=received)
                    )
        except SQLAlchemyError as exc:
            log.warning("card log unavailable (%s): feedback not linked", type(exc).__name__)
            return False
        return bool(overridden)

    def _enqueue(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._queue = queue.Queue(maxsize=10_000)
                self._writer = threading.Thread(
                    target=self._drain, name="card-log-writer", daemon=True
                )
                self._writer.start()
                atexit.register(self.flush)
        assert self._queue is not None
        try:
            self._queue.put_nowait(rows)
        except queue.Full:
            log.warning("card log queue full: %d card(s) not logged", len(rows))

    def _drain(self) -> None:
        """Write what is queued, in one transaction for all the calls queued within
        ``WRITE_DELAY`` (one commit and one feedback check for many calls, not one per call)."""
        assert self._queue is not None
        while True:
            batch = [self._queue.get()]
            if batch[0] is not None:
                self._hurry.wait(WRITE_DELAY)
            self._hurry.clear()
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [row for item in batch if item is not None for row in item]
            if rows:
                self._write(rows)
            for _ in batch:
                self._queue.task_done()
            if None in batch:
                return

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued row is written (tests, shutdown, before feedback is
        stored), at most ``timeout`` seconds; False if rows are still waiting then."""
        q = self._queue
        if q is None or self._writer is None or not self._writer.is_alive():
            return True
        end = None if timeout is None else time.monotonic() + timeout
        with q.all_tasks_done:
            while q.unfinished_tasks:
                self._hurry.set()  # (again: the writer may have taken the last call's hurry)
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                q.all_tasks_done.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    def key(self, timeout: float = HOOK_DB_SECONDS) -> bytes:
        """The service's hashing key (read at start with a longer ``timeout``; asked again
        only if the database was down then)."""
        if self._key is None:
            self._key = self._bounded.run(self._stored_key, timeout)
        if self.on_key is not None:  # told once, however the key became known
            self.on_key, tell = None, self.on_key
            tell(self._key)
        return self._key

    def _stored_key(self) -> bytes:
        with self.engine.begin() as conn:
            row = conn.execute(
                select(service_key_table.c.value).where(service_key_table.c.name == "hash")
            ).first()
            if row is not None:
                return str(row[0]).encode()
        value = secrets.token_hex(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(service_key_table).values(name="hash", value=value))
        except IntegrityError:
            pass  # another replica made it first: use theirs
        with self.engine.begin() as conn:
            stored = conn.execute(
                select(service_key_table.c.value).where(service_key_table.c.name == "hash")
            ).scalar_one()
        return str(stored).encode()

    def digest(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(self.key(), message, hashlib.sha256).hexdigest()

    def record(
        self,
        issued: list[IssuedCard],
        *,
        hook: str,
        service_id: str,
        patient_id: str,
        knowledge_version: str,
        shown: bool,
        trace: Trace,
        session: str = "",
    ) -> None:
        if not issued:
            return
        if self._key is None and not self._available():
            # no key to hash with, and asking the database again would hold this call
            trace.add("card log", "the database was unavailable moments ago: cards not logged")
            return
        try:
            now = datetime.now(UTC)
            patient_hash = self.digest("patient", patient_id)
            rows = [
                {
                    "card_uuid": c.uuid,
                    "issued_at": now,
                    "hook": hook[:50],
                    "service_id": service_id[:100],
                    "drug": c.drug[:100],
                    "genes": c.genes[:200],
                    "phenotype": c.phenotype[:300],
                    "recommendation_id": c.recommendation_id[:200],
                    "indicator": c.indicator,
                    "knowledge_version": knowledge_version[:40],
                    "shown": shown,
                    "patient_hash": patient_hash,
                    "order_hash": self.digest(
                        "order", patient_id, session, c.order_reference or ""
                    ),
                }
                for c in issued
            ]
            if self.background:
                self._enqueue(rows)
            else:
                self._write(rows)
            trace.add("card log", f"{len(issued)} card(s) logged")
        except SQLAlchemyError as exc:
            self._fault(exc, "cards returned, not logged", trace)

    def overridden(
        self, issued: list[IssuedCard], patient_id: str, trace: Trace, session: str = ""
    ) -> set[tuple[str, str | None]]:
        """(recommendation id, order reference) pairs overridden with a reason for this order
        in this ordering ``session`` (``ordering_session``)."""
        if not issued or not self._available() or self._latest_is_fresh():
            return set()  # (fresh: no override lately, known without asking the database)
        since = datetime.now(UTC) - SESSION
        try:
            wanted = {
                self.digest("order", patient_id, session, c.order_reference or ""): c
                for c in issued
                if c.order_reference
            }
        except SQLAlchemyError as exc:
            self._fault(exc, "earlier overrides not checked", trace)
            return set()
        if not wanted:
            return set()

        def ask() -> list[Any]:
            latest = self._latest_override_at()
            if latest is None or latest < since:
                return []  # no card was overridden recently: nothing to suppress
            with self.engine.connect() as conn:
                return list(
                    conn.execute(
                        select(
                            card_log_table.c.order_hash, card_log_table.c.recommendation_id
                        ).where(
                            card_log_table.c.order_hash.in_(list(wanted)),
                            card_log_table.c.overridden_at.is_not(None),
                            card_log_table.c.issued_at >= since,
                        )
                    ).all()
                )

        try:
            rows = self._bounded.run(ask, HOOK_DB_SECONDS)
        except SQLAlchemyError as exc:
            self._fault(exc, "earlier overrides not checked", trace)
            return set()
        return {(rec, wanted[h].order_reference) for h, rec in rows}

    def _latest_is_fresh(self) -> bool:
        """Is the latest override known without asking the database (and none recent)?"""
        checked, latest = self._latest_override
        recent = latest is not None and latest >= datetime.now(UTC) - SESSION
        return time.monotonic() - checked < OVERRIDE_CHECK_SECONDS and not recent

    def _latest_override_at(self) -> datetime | None:
        """When a card was last overridden (any replica), asked at most once a second."""
        checked, latest = self._latest_override
        now = time.monotonic()
        if now - checked < OVERRIDE_CHECK_SECONDS:
            return latest
        with self.engine.connect() as conn:
            latest = conn.execute(LATEST_OVERRIDE).scalar()
        if latest is not None:
            latest = as_utc(latest)
        self._latest_override = (now, latest)
        return latest

    def forget_cache(self) -> None:
        self._latest_override = (0.0, None)

    def all(self) -> list[dict[str, Any]]:
        self.flush()
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(select(card_log_table).order_by(card_log_table.c.id))
            ]


def purge(engine: Engine, days: int, now: datetime | None = None) -> tuple[int, int]:
    """Delete card log rows issued, and feedback received, more than ``days`` days ago
    (``PGX_CDS_RETENTION_DAYS``); returns (cards, feedback items) deleted."""
    if days < 1:
        raise ValueError("the retention must be at least one day")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    with engine.begin() as conn:
        cards = conn.execute(delete(card_log_table).where(card_log_table.c.issued_at < cutoff))
        items = conn.execute(delete(feedback_table).where(feedback_table.c.received_at < cutoff))
    return cards.rowcount, items.rowcount
