"""The service's tables, in one metadata: feedback, the card log and its key, seen client JWTs.

The schema itself is made and changed by the migrations (``migrations/``, run by ``schema``);
these definitions are what the code reads and writes, and must agree with them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()
feedback_table = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(100), nullable=False),
    Column("card_uuid", String(255), nullable=False, index=True),
    Column("outcome", String(20), nullable=False),
    Column("accepted_suggestions", JSON, nullable=False),
    Column("override_reason_system", String(255)),
    Column("override_reason_code", String(100)),
    Column("override_reason_display", String(255)),
    Column("override_comment", Text),
    Column("outcome_timestamp", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    # does the card log know this card? (None: feedback stored before the card log existed)
    Column("card_known", Boolean),
    # the authenticated client that sent it (its JWT ``iss``; None without authentication)
    Column("client", String(255)),
    # one item per (card, outcome, outcomeTimestamp): a retry or a race stores nothing twice
    Index("uq_feedback_item", "card_uuid", "outcome", "outcome_timestamp", unique=True),
    Index("ix_feedback_client_received_at", "client", "received_at"),
)


def as_utc(value: datetime) -> datetime:
    """A stored time in UTC (SQLite gives it back without an offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


card_log_table = Table(
    "card_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(64), nullable=False, unique=True),
    Column("issued_at", DateTime(timezone=True), nullable=False, index=True),
    Column("hook", String(50), nullable=False),
    Column("service_id", String(100), nullable=False),
    Column("drug", String(100), nullable=False),
    Column("genes", String(200), nullable=False),
    Column("phenotype", String(300), nullable=False),
    # (not indexed, nor is patient_hash: no query selects by them; migration 0008)
    Column("recommendation_id", String(200), nullable=False),
    Column("indicator", String(20), nullable=False),
    Column("knowledge_version", String(40), nullable=False),
    Column("shown", Boolean, nullable=False),
    Column("patient_hash", String(64), nullable=False),
    Column("order_hash", String(64), nullable=False, index=True),
    # indexed: the hook path asks for its maximum (``_latest_override_at``)
    Column("overridden_at", DateTime(timezone=True), index=True),
    # which key made patient_hash and order_hash (``card_log.HashKeys``; "db": the key the
    # service once kept in this database)
    Column("key_id", String(16)),
    # the authenticated client the card was issued to (its JWT ``iss``); only it may give
    # feedback on the card
    Column("client", String(255)),
)
#: Hook calls and the orders judged, per hour (``call_counts``): the report's denominator.
hook_calls_table = Table(
    "hook_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hour", DateTime(timezone=True), nullable=False, index=True),
    Column("hook", String(50), nullable=False),
    Column("service_id", String(100), nullable=False),
    # "" on the row of the calls and all their orders; a covered drug on the row of its orders
    Column("drug", String(100), nullable=False),
    Column("calls", Integer, nullable=False),
    Column("orders", Integer, nullable=False),
)
service_key_table = Table(
    "service_key",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", String(128), nullable=False),
)

#: The SMART Health Card issuer's signing keys kept by the service when none is configured
#: (``PGX_CDS_SHC_KEY``): one made once, shared by every replica and the command line; older
#: ones kept (public part listed in the key set) so that cards they signed still verify.
shc_key_table = Table(
    "shc_key",
    metadata,
    # the key's JWK thumbprint (RFC 7638): the card's ``kid``
    Column("kid", String(64), primary_key=True),
    # the private JWK (JSON); NULL once the key is retired and its private part deleted
    Column("private_jwk", Text),
    Column("public_jwk", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    # no longer signs (a newer key does); still listed in the key set
    Column("retired", Boolean, nullable=False, default=False),
)


replay_table = Table(
    "jwt_replay",
    metadata,
    # sha256 hex of "iss|jti"
    Column("jti_hash", String(64), primary_key=True),
    # unix seconds after which the token is refused as expired (exp + leeway)
    Column("expires_at", BigInteger, nullable=False, index=True),
)
