"""The keys of the card log's keyed hashes (patient and order), and which key made a row.

The key comes from outside the database it protects (``PGX_CDS_HASH_KEY`` or a mounted
secret file, validated in ``settings``): a copy of the database then holds keyed hashes
that cannot be turned back into patient ids without the key. Older keys may follow the
current one (rotation): rows are written with the current key and marked with its id
(``card_log.key_id``); the override check hashes the order with every key, so rows written
under an older key are still found.

Without a configured key (testing only, refused with client authentication) the service
keeps a random key in the database, as it always did; its rows are marked ``db``. Once a key
is configured, the key kept in the database is deleted (``drop_stored``): rows hashed with
it stay in the log and are counted by the report, and nobody can link them to patients.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .tables import service_key_table

log = logging.getLogger("cds_service.card_log")

#: The key id of rows hashed with the key kept in the database.
STORED = "db"


@dataclass(frozen=True)
class HashKey:
    id: str
    secret: bytes


def key_id(secret: bytes) -> str:
    """A key's id: derived from it (one-way), so that every replica names it alike."""
    return hmac.new(secret, b"pgx-cds hash key id", hashlib.sha256).hexdigest()[:12]


def configured(secrets_: list[bytes]) -> list[HashKey]:
    """The configured keys (current first) with their ids."""
    return [HashKey(key_id(s), s) for s in secrets_]


def stored(engine: Engine) -> HashKey:
    """The key kept in the database (made once, by whichever replica comes first)."""
    with engine.begin() as conn:
        row = conn.execute(
            select(service_key_table.c.value).where(service_key_table.c.name == "hash")
        ).first()
        if row is not None:
            return HashKey(STORED, str(row[0]).encode())
    value = secrets.token_hex(32)
    try:
        with engine.begin() as conn:
            conn.execute(insert(service_key_table).values(name="hash", value=value))
    except IntegrityError:
        pass  # another replica made it first: use theirs
    with engine.begin() as conn:
        value = conn.execute(
            select(service_key_table.c.value).where(service_key_table.c.name == "hash")
        ).scalar_one()
    return HashKey(STORED, str(value).encode())


def drop_stored(engine: Engine) -> bool:
    """Delete the key kept in the database (a key is configured now); True if there was one."""
    with engine.begin() as conn:
        gone = conn.execute(
            delete(service_key_table).where(service_key_table.c.name == "hash")
        ).rowcount
    if gone:
        log.warning(
            "the card log's old hashing key was deleted from the database: a key is "
            "configured now (rows hashed with the old key are kept and counted, and can no "
            "longer be linked to patients)"
        )
    return bool(gone)
