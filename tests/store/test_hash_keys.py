"""Issue 26, item 3: the card log's keyed hashes cannot be reversed from a copy of the database.

The key comes from the environment or a mounted secret file (required with client
authentication), is validated, may be rotated (a key id per row; rows written under an older
key are still found by the override check), and a key the service kept in the database
before is deleted once a key is configured."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import pytest
from builders import (
    HASH_KEY,
    codeine_cards,
)
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from cds_service.settings import Settings
from cds_service.store.tables import card_log_table, service_key_table
from cds_service.web.app import create_app

OLD_KEY = secrets.token_hex(32)
NEW_KEY = secrets.token_hex(32)
SECURED = {
    "trusted_issuers": {"https://ehr.example.org": "https://ehr.example.org/jwks.json"},
    "public_url": "https://cds.example.org",
    "fhir_servers": "https://ehr.example.org/fhir",
}


def _override(client, card_uuid: str) -> None:
    item = {
        "card": card_uuid,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-29T10:00:00Z",
        "overrideReason": {"reason": {"code": "no-alternative"}},
    }
    answer = client.post("/cds-services/pgx-order-select/feedback", json={"feedback": [item]})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("x", "not hex or base64"),
        ("ab", "1 byte(s)"),
        ("00" * 31, "31 byte(s)"),
        ("00" * 32, "does not look random"),
        ("k" * 64, "does not look random"),  # base64 letters, but no randomness
        ("correct horse battery staple", "5 byte(s)"),  # (a space separates keys)
    ],
)
def test_a_weak_key_is_refused(tmp_path, key, says):
    with pytest.raises(ValidationError, match=re.escape(says)):
        Settings(database_url=f"sqlite:///{tmp_path / 'f.db'}", hash_key=key)


@pytest.mark.parametrize(
    "key", [secrets.token_hex(32), secrets.token_urlsafe(32), secrets.token_hex(64), HASH_KEY]
)
def test_random_keys_of_32_bytes_or_more_are_accepted(tmp_path, key):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'f.db'}", hash_key=key)
    assert settings.hash_keys() == [key.encode()]
    assert key not in repr(settings)  # a secret: never in a printed setting


def test_client_authentication_needs_a_key_from_outside_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    with pytest.raises(ValidationError, match="PGX_CDS_HASH_KEY"):
        Settings(database_url=url, **SECURED)
    built_in_code = Settings(database_url=url).model_copy(update=SECURED)
    with pytest.raises(ValueError, match="PGX_CDS_HASH_KEY"):
        create_app(built_in_code)  # (model_copy skips validation: the app checks again)
    Settings(database_url=url, hash_key=HASH_KEY, **SECURED)


def test_the_key_may_come_from_a_mounted_secret_file_with_older_keys_after_it(tmp_path):
    secret = tmp_path / "hash-keys"
    secret.write_text(f"{NEW_KEY}\n{OLD_KEY}\n")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'f.db'}", hash_key_file=secret)
    assert settings.hash_keys() == [NEW_KEY.encode(), OLD_KEY.encode()]
    secret.write_text(f"{NEW_KEY}\nshort\n")
    with pytest.raises(ValidationError, match="older key 1 is not hex"):
        Settings(database_url=f"sqlite:///{tmp_path / 'f.db'}", hash_key_file=secret)
    with pytest.raises(ValidationError, match="cannot read"):
        Settings(hash_key_file=tmp_path / "missing")
    with pytest.raises(ValidationError, match="not both"):
        Settings(hash_key=NEW_KEY, hash_key_file=tmp_path / "hash-keys")


def _database_copy(app) -> tuple[list[dict], list[str]]:
    """What a thief with a copy of the database has: the card log and any stored key."""
    engine = app.extensions["pgx"].store.engine
    app.extensions["pgx"].store.card_log.flush()
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(card_log_table))]
        stored = [r.value for r in conn.execute(select(service_key_table))]
    return rows, stored


def _brute_force(rows: list[dict], candidate_keys: list[str], ids: range) -> set[str]:
    """Hash every 6-digit patient id with every key found in the copy."""
    wanted = {r["patient_hash"] for r in rows}
    found = set()
    for key in candidate_keys:
        for n in ids:
            digest = hmac.new(key.encode(), f"patient\x1f{n}".encode(), hashlib.sha256)
            if digest.hexdigest() in wanted:
                found.add(str(n))
    return found


def test_a_database_copy_holds_no_key_and_gives_no_patient_back(settings):
    """The attack of the issue: without a configured key the copy holds the key and the
    patient id comes back by hashing every 6-digit id; with one, the copy holds no key."""
    ids = range(123_000, 124_000)  # (a slice of the million, to keep the test quick)
    testing = create_app(settings)
    codeine_cards(testing.test_client(), patient="123456")
    rows, stored = _database_copy(testing)
    assert _brute_force(rows, stored, ids) == {"123456"}  # why a key must live elsewhere

    keyed = create_app(settings.model_copy(update={"hash_key": SecretStr(NEW_KEY)}))
    codeine_cards(keyed.test_client(), patient="123456")
    rows, stored = _database_copy(keyed)
    assert stored == []  # the key kept in the database before is deleted
    assert _brute_force([r for r in rows if r["key_id"] != "db"], stored, ids) == set()
    assert {r["key_id"] for r in rows} == {"db", rows[-1]["key_id"]} and rows[-1]["key_id"] != "db"


def test_after_a_rotation_an_override_under_the_old_key_still_counts(settings):
    old = create_app(settings.model_copy(update={"hash_key": SecretStr(OLD_KEY)})).test_client()
    [card] = codeine_cards(old, patient="123456")
    _override(old, card["uuid"])

    rotated_settings = settings.model_copy(update={"hash_key": SecretStr(f"{NEW_KEY},{OLD_KEY}")})
    rotated = create_app(rotated_settings).test_client()
    # same order, same session: suppressed; another order: shown, under the new key
    assert codeine_cards(rotated, hook="order-sign", patient="123456") == []
    assert len(codeine_cards(rotated, order="rx-2", patient="123456")) == 1
    rows, _ = _database_copy(rotated.application)
    assert len({r["key_id"] for r in rows}) == 2

    dropped = settings.model_copy(update={"hash_key": SecretStr(NEW_KEY)})
    again = codeine_cards(create_app(dropped).test_client(), hook="order-sign", patient="123456")
    assert len(again) == 1


def test_a_digest_is_the_hmac_sha256_of_its_parts_under_each_key():
    """Keyed once per key and copied per message: the same value as a fresh HMAC, whichever
    key was used last."""
    import hashlib
    import hmac

    from sqlalchemy import create_engine

    from cds_service.store.card_log import CardLog

    card_log = CardLog(create_engine("sqlite://"), [b"a" * 32, b"b" * 32])
    for secret in (b"a" * 32, b"b" * 32, b"a" * 32):
        for parts in (("patient", "p1"), ("order", "p1", "u\x1fe", "rx-1")):
            expected = hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()
            assert card_log.digest(*parts, secret=secret) == expected
