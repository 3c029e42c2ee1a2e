"""Feedback on cards (CDS Hooks 2.0.1 §Feedback): validated, then stored before we answer.

A request is stored whole or not at all: one malformed item rejects the request (400)
and nothing from it is written.

Feedback is bound to the client the card was issued to: with client authentication, the
card log keeps each card's client (JWT ``iss``) and feedback on a card issued to another
client is refused whole (403), here and when feedback that arrived before its card is linked
to it later. Per client (all unauthenticated callers count as one) at most ``per_minute``
items are stored a minute and ``unknown_per_hour`` items about cards the log does not know
(yet) an hour; more is a 429 with ``Retry-After``. Both are counted in the database, so the
limits hold across workers and replicas (calls arriving at the same instant may pass them
together by at most one call's items each). One item is stored once: a unique index on
(card, outcome, outcomeTimestamp) and an insert that ignores what is already there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DataError, SQLAlchemyError

from ..core.errors import ClientError, ServiceUnavailable
from ..core.hook_request import validation_details
from .card_log import CardLog
from .db_guard import Bounded
from .schema import SchemaError, sqlite_file
from .tables import as_utc, card_log_table, feedback_table

log = logging.getLogger("cds_service.feedback")


class _Coding(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(min_length=1, max_length=100)
    system: str | None = Field(default=None, max_length=255)  # the sandbox sends code+system
    display: str | None = Field(default=None, max_length=255)


class _OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")
    reason: _Coding | None = None
    userComment: str | None = Field(default=None, max_length=4000)


class _Accepted(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=255)


#: Epic's override reasons configured in Epic arrive in an extension (its CDS Hooks
#: tutorial, "Feedback"): stored with this system, the category as the code.
EPIC_REASON_SYSTEM = "urn:com.epic.cdshooks.feedback.overrideReason"
_EPIC_EXTENSION = "com.epic.cdshooks.feedback.overrideReason."


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    card: str = Field(min_length=1, max_length=255)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[_Accepted] = Field(default_factory=list, max_length=50)
    overrideReason: _OverrideReason | None = None
    outcomeTimestamp: datetime

    @model_validator(mode="before")
    @classmethod
    def _plural(cls, data: Any) -> Any:
        """Epic sends ``overrideReasons`` (plural; CDS Hooks 2.0.1 says ``overrideReason``),
        with the reason in ``reason`` or, for reasons built in Epic, in an ``extension``:
        read either as the spec's ``overrideReason``."""
        if not isinstance(data, dict) or "overrideReason" in data or "overrideReasons" not in data:
            return data
        given = data["overrideReasons"]
        if isinstance(given, list):  # (a list: its first reason)
            given = given[0] if given else None
        if isinstance(given, dict) and given.get("reason") is None:
            extension = given.get("extension")
            if isinstance(extension, dict):
                category = extension.get(_EPIC_EXTENSION + "reasonCategory")
                display = extension.get(_EPIC_EXTENSION + "reasonDisplay") or extension.get(
                    _EPIC_EXTENSION + "reasonTitle"
                )
                if category is not None:
                    reason = {"system": EPIC_REASON_SYSTEM, "code": str(category)}
                    if isinstance(display, str):
                        reason["display"] = display[:255]
                    given = {**given, "reason": reason}
        return {**data, "overrideReason": given}

    @model_validator(mode="after")
    def _consistent(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("an 'accepted' outcome needs acceptedSuggestions")
        return self


#: Items in one feedback request at most (a clinician acts on one card at a time).
MAX_ITEMS = 50


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=MAX_ITEMS)


class Forbidden(ClientError):
    status = 403


class TooMany(ClientError):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


DB_RETRY_AFTER = 30  # seconds, in the 503 answer while the database is down
DB_CONNECT_TIMEOUT = 3  # seconds: a database that does not answer must not hold a call
#: Seconds to wait for the database: to store feedback (then 503, and a retry is never stored
#: twice), for the card writer before that, and for readiness.
STORE_SECONDS = 5.0
FLUSH_SECONDS = 2.0
PING_SECONDS = 1.0
#: Free space under which a SQLite database's disk counts as full (readiness).
MIN_FREE_BYTES = 8 * 1024 * 1024
#: How long a refused write keeps readiness "degraded" (unless a write succeeds).
WRITE_FAILED_SECONDS = 60.0
#: Default limits per client (``PGX_CDS_FEEDBACK_PER_MINUTE``, ``..._UNKNOWN_PER_HOUR``).
PER_MINUTE = 600
UNKNOWN_PER_HOUR = 100


def _without_nul(value: Any, depth: int = 0) -> Any:
    """NUL cannot be stored in PostgreSQL text: dropped from every string of the feedback
    (below the depth of what is stored; deeper parts are never stored)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if depth > 8:
        return value
    if isinstance(value, list):
        return [_without_nul(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k, depth + 1): _without_nul(v, depth + 1) for k, v in value.items()}
    return value


class FeedbackStore:
    def __init__(
        self,
        url: str,
        hash_key: str | bytes | list[bytes] | None = None,
        on_stored: Callable[[list[tuple[str, str]]], None] | None = None,
        *,
        per_minute: int = PER_MINUTE,
        unknown_per_hour: int = UNKNOWN_PER_HOUR,
    ) -> None:
        """``hash_key``: the card log's keys (``CardLog``). ``on_stored``: told the (service
        id, outcome) of the items each store wrote (the metrics count them)."""
        self.per_minute = per_minute
        self.unknown_per_hour = unknown_per_hour
        parsed = make_url(url)
        database = sqlite_file(parsed)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            # a database that does not answer must not hold calls (or threads) for long
            options = {
                "connect_args": {"connect_timeout": DB_CONNECT_TIMEOUT},
                "pool_timeout": DB_CONNECT_TIMEOUT,
            }
        # The schema is made by migrations (``schema``), not here.
        self.engine: Engine = create_engine(url, pool_pre_ping=True, **options)
        if database is not None:
            event.listen(self.engine, "connect", _write_ahead_log)
        in_memory = parsed.get_backend_name() == "sqlite" and database is None
        # an in-memory SQLite database is one per thread: write it from the caller's thread
        self.card_log = CardLog(self.engine, hash_key, background=not in_memory)
        self._card_log_table = card_log_table
        self._bounded = Bounded(self.engine, "feedback")
        self.on_stored = on_stored
        #: set when the database was unreachable at start: run before the next store
        self.prepare: Callable[[], None] | None = None
        self._write_failed: float | None = None  # (monotonic) the last store that failed

    def close(self) -> None:
        """The card log written and its threads gone, the database connections closed (at
        exit, or when the app is closed; the store still works after, opening new ones)."""
        self.card_log.close()
        self._bounded.close()
        self.engine.dispose()

    @staticmethod
    def _unavailable(exc: Exception) -> ServiceUnavailable:
        log.warning("feedback database unavailable (%s)", type(exc).__name__)
        return ServiceUnavailable(
            "the feedback database is unavailable; nothing was stored, please retry",
            retry_after=DB_RETRY_AFTER,
        )

    def store(self, service_id: str, body: Any, client: str | None = None) -> int:
        """Store the feedback sent by ``client`` (the authenticated JWT ``iss``; None without
        authentication); the number of items stored (an item stored before is not again)."""
        if not isinstance(body, dict):
            raise ClientError("the feedback body must be a JSON object with a 'feedback' array")
        body = _without_nul(body)
        try:
            request = FeedbackRequest.model_validate(body)
        except ValidationError as exc:
            raise ClientError(
                "the feedback is invalid; nothing was stored", details=validation_details(exc)
            ) from None
        now = datetime.now(UTC)
        rows = []
        for item in request.feedback:
            reason = item.overrideReason.reason if item.overrideReason else None
            timestamp = item.outcomeTimestamp
            rows.append(
                {
                    "service_id": service_id,
                    "card_uuid": item.card,
                    "outcome": item.outcome,
                    "accepted_suggestions": [s.id for s in item.acceptedSuggestions],
                    "override_reason_system": reason.system if reason else None,
                    "override_reason_code": reason.code if reason else None,
                    "override_reason_display": reason.display if reason else None,
                    "override_comment": item.overrideReason.userComment
                    if item.overrideReason
                    else None,
                    # in UTC: SQLite keeps no offset, and duplicates are found by equality
                    "outcome_timestamp": as_utc(timestamp),
                    "received_at": now,
                    "client": client,
                }
            )
        # cards issued a moment ago are known before their feedback (else linked later); not
        # those kept while the database was down (it is then likely down for this too)
        self.card_log.flush(timeout=FLUSH_SECONDS, kept=False)

        def insert_rows() -> int:
            if self.prepare is not None:
                self.prepare()
                self.prepare = None
            return self._insert(rows)

        try:
            stored = self._bounded.run(insert_rows, STORE_SECONDS)
        except DataError:
            raise ClientError("the feedback holds a value the database cannot store") from None
        except ClientError:
            raise  # (refused: another client's card, or over a limit)
        except (SQLAlchemyError, SchemaError) as exc:  # down, not answering, or wrong schema
            self._write_failed = time.monotonic()  # (readiness: "degraded")
            raise self._unavailable(exc) from None
        self._write_failed = None
        # a card another replica was writing in this moment: linked now, or by its writer
        unknown = [str(r["card_uuid"]) for r in rows if not r["card_known"]]
        if unknown:
            with contextlib.suppress(SQLAlchemyError):  # stored: the answer is 200 anyway
                self._bounded.run(lambda: self.card_log.link_feedback(unknown), STORE_SECONDS)
        self.card_log.forget_cache()
        return stored

    def _insert(self, rows: list[dict[str, Any]]) -> int:
        table = self._card_log_table
        client = rows[0]["client"]
        with self.engine.begin() as conn:  # one transaction: all items or none
            issued_to = dict(
                conn.execute(
                    select(table.c.card_uuid, table.c.client).where(
                        table.c.card_uuid.in_({row["card_uuid"] for row in rows})
                    )
                ).all()
            )
            others = {c for c in issued_to.values() if c != client}
            if others:
                raise Forbidden(
                    "feedback on a card issued to another client is not accepted; nothing was "
                    "stored"
                )
            for row in rows:
                row["card_known"] = row["card_uuid"] in issued_to
            self._check_limits(conn, rows, client)
            stored = [row for row in rows if self._insert_once(conn, row)]
            for row in stored:
                # an override with a reason: not shown again for this order in this session
                if (
                    row["outcome"] == "overridden"
                    and row["override_reason_code"]
                    and row["card_known"]
                ):
                    conn.execute(
                        update(table)
                        .where(table.c.card_uuid == row["card_uuid"])
                        .values(overridden_at=row["received_at"])
                    )
        if self.on_stored is not None:  # committed: counted (a resent item is not)
            self.on_stored([(r["service_id"], r["outcome"]) for r in stored])
        return len(stored)

    def _insert_once(self, conn: Connection, row: dict[str, Any]) -> bool:
        """Insert the item unless it is stored already (the unique index on card, outcome
        and outcome time, so that concurrent retries store it once); True if inserted."""
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(feedback_table)
            .values(**row)
            .on_conflict_do_nothing()
            .returning(feedback_table.c.id)
        )
        return conn.execute(statement).first() is not None

    def _check_limits(
        self, conn: Connection, rows: list[dict[str, Any]], client: str | None
    ) -> None:
        """429 when the client's items of the last minute, or its items about unknown cards
        of the last hour, would pass the limits (counted in the database: every replica)."""
        f = feedback_table.c
        same = f.client.is_(None) if client is None else f.client == client
        now = rows[0]["received_at"]
        recent = conn.execute(
            select(func.count()).where(same, f.received_at >= now - timedelta(minutes=1))
        ).scalar_one()
        if recent + len(rows) > self.per_minute:
            raise TooMany(
                f"more than {self.per_minute} feedback items a minute from this client; nothing "
                "was stored, please retry later",
                retry_after=60,
            )
        unknown = [r for r in rows if not r["card_known"]]
        if not unknown:
            return
        waiting = conn.execute(
            select(func.count()).where(
                same, f.card_known.is_(False), f.received_at >= now - timedelta(hours=1)
            )
        ).scalar_one()
        if waiting + len(unknown) > self.unknown_per_hour:
            raise TooMany(
                f"more than {self.unknown_per_hour} feedback items an hour about cards this "
                "service has not issued (or not yet logged); nothing was stored",
                retry_after=600,
            )

    def all(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(select(feedback_table).order_by(feedback_table.c.id))
            ]

    def ping(self) -> None:
        """Raises unless the database answers within ``PING_SECONDS`` (readiness probes give
        up after 2 s)."""

        def ping() -> None:
            with self.engine.connect() as conn:
                conn.execute(select(1))

        self._bounded.run(ping, PING_SECONDS)

    def write_problem(self) -> str | None:
        """Why the database answers but cannot take writes, if it cannot (readiness): a
        SQLite file's disk nearly full, or this process's last feedback or card log write
        refused within ``WRITE_FAILED_SECONDS``. None when writes look fine."""
        database = sqlite_file(self.engine.url)
        if database is not None:
            try:
                disk = os.statvfs(database.parent)
            except OSError:
                disk = None
            if disk is not None and disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
                return "the database's disk is full"
        failed = self._write_failed
        if failed is not None and time.monotonic() - failed < WRITE_FAILED_SECONDS:
            return "the database refused the last feedback write"
        if self.card_log.failing:
            return "the database refuses the card log's writes"
        return None


def _write_ahead_log(connection: Any, _record: Any) -> None:
    """A SQLite file in write-ahead-log mode: the card log's writers (one per worker process)
    then never make a hook call's override check wait for their commit, nor the check them;
    in the default mode, readers wait while a commit (an fsync) holds the file."""
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()
