"""The issuer's keys: from PGX_CDS_SHC_KEY, else made once in the database and shared, rotated
by kid; and the key set served at /.well-known/jwks.json (public parts, CORS *)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from cds_service.settings import Settings
from cds_service.store import schema
from cds_service.summary import keys, shc
from cds_service.summary.keys import Issuer, ShcKeyError
from cds_service.web.app import create_app

BUNDLE = {"resourceType": "Bundle", "type": "collection", "entry": []}


@pytest.fixture
def database(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    schema.upgrade(engine)
    return engine


def test_one_key_is_made_once_and_shared_by_every_process(database):
    first, second = Issuer(None, database), Issuer(None, database)
    assert first.signing().kid == second.signing().kid
    assert first.jwks() == second.jwks() == {"keys": [first.signing().public_jwk]}
    assert all("d" not in k for k in first.jwks()["keys"])


def test_rotation_keeps_older_keys_listed(database):
    issuer = Issuer(None, database)
    old = issuer.signing()
    card = shc.issue(BUNDLE, "https://cds.example.org", old)
    new = issuer.rotate()
    assert new.kid != old.kid
    other = Issuer(None, database)  # another replica signs with the new key
    assert other.signing().kid == new.kid
    listed = [k["kid"] for k in other.jwks()["keys"]]
    assert listed == [new.kid, old.kid]
    assert shc.verify(card, other.jwks()).kid == old.kid  # an old card still verifies


def test_configured_key_signs_and_database_keys_stay_listed(database, key_file, signing_jwk):
    stored = Issuer(None, database).signing()
    issuer = Issuer(key_file, database)
    assert issuer.signing().kid == signing_jwk["kid"]
    assert [k["kid"] for k in issuer.jwks()["keys"]] == [signing_jwk["kid"], stored.kid]
    with pytest.raises(ShcKeyError, match="rotate it there"):
        issuer.rotate()


def test_key_set_file_first_private_key_signs(tmp_path):
    older, current = keys.generate(), keys.generate()
    path = tmp_path / "set.json"
    public_older = keys.public_jwk(older)
    path.write_text(json.dumps({"keys": [current, public_older]}))
    issuer = Issuer(path, None)
    assert issuer.signing().kid == current["kid"]
    assert [k["kid"] for k in issuer.jwks()["keys"]] == [current["kid"], older["kid"]]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "not JSON"),
        (json.dumps({"kty": "RSA", "d": "AA"}), "not an EC key on P-256"),
        (json.dumps(keys.public_jwk(keys.generate())), "no private key"),
        (json.dumps({**keys.generate(), "d": keys.generate()["d"]}), "does not match"),
    ],
)
def test_an_unusable_key_file_says_why(tmp_path, content, problem):
    path = tmp_path / "key.json"
    path.write_text(content)
    with pytest.raises(ShcKeyError, match=problem) as err:
        Issuer(path, None)
    secret = json.loads(content).get("d") if content.startswith("{") else None
    assert secret is None or secret not in str(err.value)


def test_service_serves_the_public_key_set_to_any_origin(tmp_path, key_file, signing_jwk):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'svc.sqlite3'}",
        shc_key=key_file,
        cors_origins="https://ehr.example.org",
    )
    client = create_app(settings).test_client()
    answer = client.get("/.well-known/jwks.json", headers={"Origin": "https://wallet.example"})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    (key,) = answer.get_json()["keys"]
    assert key == keys.public_jwk(signing_jwk) and "d" not in key
    # other paths keep the site's origins
    other = client.get("/cds-services", headers={"Origin": "https://wallet.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_service_without_a_key_file_makes_one_in_its_database(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'svc.sqlite3'}")
    first = create_app(settings).test_client().get("/.well-known/jwks.json").get_json()
    again = create_app(settings).test_client().get("/.well-known/jwks.json").get_json()
    assert len(first["keys"]) == 1 and first == again
