"""The card log: every card the service issues, without patient identifiers in clear.

One row per card (its uuid, when, hook and service, drug, genes, phenotype, recommendation,
indicator, knowledge version, whether it was shown), with keyed hashes (HMAC-SHA256) of the
patient and of the order so repeated cards can be counted and suppressed without anyone being
identified. The key comes from outside the database (``PGX_CDS_HASH_KEY`` or a mounted
secret file) and may be rotated: see ``keys``. Each row names its key and the authenticated
client the card was issued to (only that client may give feedback on it).

Feedback refers to these rows: an override with a reason marks the card's advice for that
order as overridden, and the same advice for the same order is not shown again within the
ordering session: the same draft order, clinician and encounter, within ``SESSION`` (the
public sandbox gives every draft the same id, and many testers share its patients).

Logging a card never fails a hook call and never delays it: rows are written by a background
writer (``card_writer``), which keeps them while the database is down and writes them when it
is back (bounded; real losses are counted). A fault on the hook path (the override check)
pauses that check for ``DOWN_SECONDS``, not the logging. The
check for earlier overrides asks the database only when some card was overridden recently
(known to every replica within ``OVERRIDE_CHECK_SECONDS``).

Feedback may reach a replica before the card it is about has been written by another
replica's writer; ``link_feedback`` joins the two whichever is stored second.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Select,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..core.trace import Trace
from . import keys
from .card_writer import CardWriter
from .db_guard import Bounded
from .many_rows import insert_rows, one_of, one_of_values
from .tables import as_utc, card_log_table, feedback_table, hook_calls_table

log = logging.getLogger("cds_service.card_log")

#: How long an override silences the same advice for the same order in the same session.
SESSION = timedelta(hours=1)
OVERRIDE_CHECK_SECONDS = 1.0
#: Past this share of ``OVERRIDE_CHECK_SECONDS`` the latest override is asked again ahead,
#: on another thread (``CardLog._refresh_ahead``).
REFRESH_AHEAD = 0.7
DOWN_SECONDS = 15.0
#: The longest a hook call waits for the card log's database (it answers in milliseconds):
#: then it goes on without the check, as when the database is down.
HOOK_DB_SECONDS = 0.5


#: When a card was last overridden: asked on the hook path, answered from the index above.
LATEST_OVERRIDE = select(func.max(card_log_table.c.overridden_at))


@lru_cache(maxsize=4)
def _unlinked_feedback(dialect: str) -> Select[Any]:
    """Feedback on the cards given as ``one_of`` that is not linked to its card yet."""
    f = feedback_table.c
    return select(
        f.id, f.card_uuid, f.outcome, f.override_reason_code, f.received_at, f.client
    ).where(one_of(f.card_uuid, dialect), f.card_known.is_(False))


@lru_cache(maxsize=4)
def _written(dialect: str) -> Select[Any]:
    """Which of the cards given as ``one_of`` the log holds already."""
    return select(card_log_table.c.card_uuid).where(one_of(card_log_table.c.card_uuid, dialect))


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
    def __init__(
        self,
        engine: Engine,
        key: str | bytes | list[bytes] | None = None,
        *,
        background: bool = True,
        on_lost: Callable[[int], None] | None = None,
    ) -> None:
        """``key``: the configured hashing keys, the current one first (a single key may be
        given alone); None: the key kept in the database (testing only). ``on_lost``: told
        how many cards could not be logged at all (counted in a metric)."""
        self.engine = engine
        secrets_ = [key] if isinstance(key, str | bytes) else list(key or [])
        self._keys = keys.configured([s.encode() if isinstance(s, str) else s for s in secrets_])
        self._key: keys.HashKey | None = self._keys[0] if self._keys else None
        self._stored_dropped = not self._keys  # a configured key: the stored one goes
        self._latest_override: tuple[float, datetime | None] = (0.0, None)
        self._refresh_lock = threading.Lock()
        self._keyed: dict[bytes, hmac.HMAC] = {}  # (digest)
        self._refreshing = False
        self._generation = 0  # (forget_cache: an answer asked before it is not kept)
        self.background = background
        self._writer = CardWriter(lambda rows: self._write(rows), on_lost)
        self._down_until = 0.0  # after a database fault, hook calls skip it for a while
        self._bounded = Bounded(engine, "card-log")
        #: told the key once it is known (the log's patient references are keyed from it)
        self.on_key: Callable[[bytes], None] | None = None

    @property
    def configured_key(self) -> bool:
        """Does the key come from the settings (not from the database)?"""
        return bool(self._keys)

    @property
    def on_lost(self) -> Callable[[int], None] | None:
        return self._writer.on_lost

    @on_lost.setter
    def on_lost(self, tell: Callable[[int], None] | None) -> None:
        self._writer.on_lost = tell

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _fault(self, exc: Exception, what: str, trace: Trace) -> None:
        self._down_until = time.monotonic() + DOWN_SECONDS
        log.warning("card log unavailable (%s): %s", type(exc).__name__, what)
        trace.add("card log", f"the database is unavailable: {what}")

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        """Insert the rows (the writer's work); False if the database refused them.

        On PostgreSQL the insert is one statement (``many_rows``), committed by itself
        (autocommit), and the look for early feedback follows on the same connection: three
        round trips to the server a write (the pool's ping, the insert, the look), not eight,
        each of which hands the interpreter lock back and forth with the loop answering hook
        calls. With that and less of the writer's CPU, the alerting calls' slowest 1% is
        shorter (``docs/performance.md``)."""
        uuids = [r["card_uuid"] for r in rows]
        try:
            if not self._stored_dropped:
                keys.drop_stored(self.engine)
                self._stored_dropped = True
            with self.engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                try:
                    with conn.begin():
                        insert_rows(conn, card_log_table, rows)
                except IntegrityError:
                    # a retry of rows whose commit was not acknowledged: write the rest only
                    with conn.begin():
                        there = set(
                            conn.execute(
                                _written(conn.dialect.name), {"one_of": one_of_values(uuids)}
                            ).scalars()
                        )
                        rest = [r for r in rows if r["card_uuid"] not in there]
                        insert_rows(conn, card_log_table, rest)
                # feedback about these cards may have reached another replica while they
                # were queued (looked for after the commit; linked in a transaction of its
                # own, only when there is some)
                try:
                    early = bool(self._unlinked(conn, uuids))
                except SQLAlchemyError:
                    early = True  # (the link tries again, and says what failed)
        except SQLAlchemyError as exc:  # (the writer says when the cards are kept)
            log.debug("card log: write failed (%s)", type(exc).__name__)
            return False
        if early and self.link_feedback(uuids):
            self.forget_cache()
        return True

    @staticmethod
    def _unlinked(conn: Connection, card_uuids: list[str]) -> list[Any]:
        """Feedback on these cards not linked to its card yet (``link_feedback``)."""
        return list(
            conn.execute(
                _unlinked_feedback(conn.dialect.name), {"one_of": one_of_values(card_uuids)}
            ).all()
        )

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
                early = self._unlinked(conn, card_uuids)
                if not early:
                    return False
                issued_to = dict(
                    conn.execute(
                        select(c.card_uuid, c.client).where(c.card_uuid.in_({r[1] for r in early}))
                    ).all()
                )
                # only the client the card was issued to may give feedback on it: another's
                # stays unlinked (counted as about an unknown card, never an override)
                mine = [r for r in early if r[1] in issued_to and issued_to[r[1]] == r[5]]
                if not mine:
                    return False
                conn.execute(
                    update(feedback_table)
                    .where(f.id.in_([r[0] for r in mine]))
                    .values(card_known=True)
                )
                overridden: dict[str, datetime] = {}
                for _, uuid, outcome, reason, received, _ in mine:
                    if outcome == "overridden" and reason:
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
        self._writer.put(rows)

    def flush(self, timeout: float | None = None, *, kept: bool = True) -> bool:
        """Wait until every card handed to the writer is written, at most ``timeout``
        seconds; False if some are still waiting then (``kept``: also those kept while the
        database was down)."""
        return self._writer.flush(timeout, kept=kept)

    @property
    def failing(self) -> bool:
        """Are cards waiting because the database refused them?"""
        return self._writer.failing

    @property
    def lost(self) -> int:
        """Cards this process could not log at all."""
        return self._writer.lost

    def key(self, timeout: float = HOOK_DB_SECONDS) -> bytes:
        """The current hashing key (the configured one; else the one kept in the database,
        read at start with a longer ``timeout`` and asked again only if the database was
        down then)."""
        return self._current(timeout).secret

    def _current(self, timeout: float = HOOK_DB_SECONDS) -> keys.HashKey:
        if self._key is None:
            self._key = self._bounded.run(lambda: keys.stored(self.engine), timeout)
        tell = self.on_key
        if tell is not None:  # told once, however the key became known
            self.on_key = None
            tell(self._key.secret)
        return self._key

    def _all_keys(self) -> list[keys.HashKey]:
        """Every key rows may have been hashed with that is still known (current first)."""
        return self._keys or [self._current()]

    def digest(self, *parts: str, secret: bytes | None = None) -> str:
        message = "\x1f".join(parts).encode("utf-8", "surrogatepass")
        key = secret or self.key()
        # An HMAC keyed once per key and copied for each message: the same value as
        # hmac.new(key, message, sha256), without OpenSSL setting up the key every time.
        keyed = self._keyed.get(key)
        if keyed is None:
            if len(self._keyed) > 16:  # (a handful of keys: current and retired ones)
                self._keyed.clear()
            keyed = self._keyed[key] = hmac.new(key, digestmod=hashlib.sha256)
        mac = keyed.copy()
        mac.update(message)
        return mac.hexdigest()

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
        client: str | None = None,
    ) -> None:
        """Log the cards of one call (``client``: the authenticated client they were issued
        to, the only one whose feedback on them is accepted)."""
        if not issued:
            return
        if self._key is None and not self._available():
            # no key to hash with, and asking the database again would hold this call
            trace.add("card log", "the database was unavailable moments ago: cards not logged")
            self._writer.lose(len(issued), "no hashing key: the database holding it is down")
            return
        try:
            now = datetime.now(UTC)
            key = self._current()
            patient_hash = self.digest("patient", patient_id, secret=key.secret)
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
                        "order", patient_id, session, c.order_reference or "", secret=key.secret
                    ),
                    "key_id": key.id,
                    "client": client,
                }
                for c in issued
            ]
        except SQLAlchemyError as exc:
            self._fault(exc, "cards returned, not logged", trace)
            self._writer.lose(len(issued), "no hashing key: the database holding it is down")
            return
        if self.background:
            self._enqueue(rows)
        elif not self._write(rows):
            self._writer.lose(len(rows), "the database refused them")
        trace.add("card log", f"{len(issued)} card(s) logged")

    def overridden(
        self, issued: list[IssuedCard], patient_id: str, trace: Trace, session: str = ""
    ) -> set[tuple[str, str | None]]:
        """(recommendation id, order reference) pairs overridden with a reason for this order
        in this ordering ``session`` (``ordering_session``), under any key still known."""
        if not issued or not self._available() or self._latest_is_fresh():
            return set()  # (fresh: no override lately, known without asking the database)
        since = datetime.now(UTC) - SESSION
        try:
            wanted = {
                self.digest("order", patient_id, session, c.order_reference, secret=k.secret): c
                for k in self._all_keys()
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
        """Is the latest override known without asking the database (and none recent)?
        Past ``REFRESH_AHEAD`` of its age it is asked again on another thread, so that under
        steady traffic no hook call waits for the question (it used to hold one call a second
        in each worker for a database round trip)."""
        checked, latest = self._latest_override
        recent = latest is not None and latest >= datetime.now(UTC) - SESSION
        age = time.monotonic() - checked
        if REFRESH_AHEAD * OVERRIDE_CHECK_SECONDS <= age < OVERRIDE_CHECK_SECONDS:
            self._refresh_ahead()
        return age < OVERRIDE_CHECK_SECONDS and not recent

    def _refresh_ahead(self) -> None:
        """Ask when a card was last overridden on another thread (at most one at a time); a
        ``forget_cache`` meanwhile (feedback stored) wins over its answer."""
        with self._refresh_lock:
            if self._refreshing:
                return
            self._refreshing = True
        generation = self._generation

        def refresh() -> None:
            try:
                now = time.monotonic()
                with self.engine.connect() as conn:
                    latest = conn.execute(LATEST_OVERRIDE).scalar()
                with self._refresh_lock:
                    if generation == self._generation:
                        self._latest_override = (now, as_utc(latest) if latest else None)
            except SQLAlchemyError as exc:  # the hook path asks again itself, bounded
                log.debug("card log: refreshing the latest override failed (%s)", exc)
            finally:
                self._refreshing = False

        if not self._bounded.submit(refresh):
            self._refreshing = False

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

    def close(self) -> None:
        """Write what is waiting and let the threads go (at exit, or when the app is closed;
        a later card starts them again)."""
        self._writer.close()
        self._bounded.close()

    def forget_cache(self) -> None:
        with self._refresh_lock:
            self._generation += 1
            self._latest_override = (0.0, None)

    def all(self) -> list[dict[str, Any]]:
        self.flush(timeout=10)
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(select(card_log_table).order_by(card_log_table.c.id))
            ]


def purge(engine: Engine, days: int, now: datetime | None = None) -> tuple[int, int]:
    """Delete card log rows issued, and feedback received, more than ``days`` days ago
    (``PGX_CDS_RETENTION_DAYS``), and the hook call counts of those days; returns (cards,
    feedback items) deleted."""
    if days < 1:
        raise ValueError("the retention must be at least one day")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    with engine.begin() as conn:
        cards = conn.execute(delete(card_log_table).where(card_log_table.c.issued_at < cutoff))
        items = conn.execute(delete(feedback_table).where(feedback_table.c.received_at < cutoff))
        conn.execute(delete(hook_calls_table).where(hook_calls_table.c.hour < cutoff))
    return cards.rowcount, items.rowcount
