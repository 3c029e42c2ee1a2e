"""The SMART Health Card issuer's keys kept in the database (``shc_key``).

The store knows nothing of JWKs: it keeps the JSON texts a caller gives (``summary.keys``
makes and reads them). ``current`` returns the key that signs, making one with ``make`` when
there is none: whichever replica comes first makes it, the others read it (replicas that
make one at the same moment each keep theirs, and all sign with the oldest). ``rotate``
adds a new key and retires the others; ``public`` lists
every kept key's public part (a card signed with a retired key still verifies).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .tables import shc_key_table

#: (kid, private JWK JSON, public JWK JSON)
KeyTexts = tuple[str, str, str]


def _signing(engine: Engine) -> KeyTexts | None:
    """The oldest key that is not retired: replicas that each made one at once agree on it
    (``rotate`` retires every other key, so after it there is one)."""
    t = shc_key_table
    with engine.begin() as conn:
        row = conn.execute(
            select(t.c.kid, t.c.private_jwk, t.c.public_jwk)
            .where(t.c.retired.is_(False), t.c.private_jwk.is_not(None))
            .order_by(t.c.created_at, t.c.kid)
            .limit(1)
        ).first()
    return (str(row[0]), str(row[1]), str(row[2])) if row is not None else None


def _add(engine: Engine, key: KeyTexts, now: datetime | None = None) -> None:
    kid, private, public = key
    with engine.begin() as conn:
        conn.execute(
            insert(shc_key_table).values(
                kid=kid,
                private_jwk=private,
                public_jwk=public,
                created_at=now or datetime.now(UTC),
                retired=False,
            )
        )


def current(engine: Engine, make: Callable[[], KeyTexts]) -> KeyTexts:
    """The key that signs (made with ``make`` once, by the first replica to need it)."""
    found = _signing(engine)
    if found is not None:
        return found
    with contextlib.suppress(IntegrityError):  # (the same id: practically never)
        _add(engine, make())
    found = _signing(engine)
    assert found is not None
    return found


def rotate(engine: Engine, make: Callable[[], KeyTexts]) -> KeyTexts:
    """A new signing key; the others are retired (listed, no longer signing)."""
    key = make()
    _add(engine, key)
    with engine.begin() as conn:
        conn.execute(
            update(shc_key_table).where(shc_key_table.c.kid != key[0]).values(retired=True)
        )
    return key


def public(engine: Engine) -> list[str]:
    """Every kept key's public JWK (JSON), the newest first."""
    t = shc_key_table
    with engine.begin() as conn:
        rows = conn.execute(select(t.c.public_jwk).order_by(t.c.created_at.desc(), t.c.kid))
        return [str(r[0]) for r in rows]
