"""The SMART Health Card issuer's keys: ES256 (P-256) JWKs, their ids and the key set.

* ``PGX_CDS_SHC_KEY``: a file holding a private JWK (or a JWK Set: its first private key
  signs, the others are older keys still listed), e.g. a mounted Secret.
* Without it: one key made once and kept in the service's database (``store.shc_keys``),
  so every replica and ``pgx-cds summary`` sign with the same key.
* ``kid`` is the key's JWK thumbprint (RFC 7638), as the IG requires; keys rotate by
  ``kid``: the key set (``/.well-known/jwks.json``) lists every kept key's public part, so a
  card signed with an older key still verifies.

Private parts never leave this module's ``SigningKey`` (never logged, never in the key set).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..store import shc_keys

CURVE = "P-256"
#: The members of an EC public JWK that its thumbprint covers (RFC 7638, section 3.2).
_THUMBPRINT_MEMBERS = ("crv", "kty", "x", "y")
_COORDINATE_BYTES = 32


class ShcKeyError(ValueError):
    """A key file or JWK that cannot be used (what is wrong, never the key)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: ec.EllipticCurvePrivateKey
    public_jwk: dict[str, str]

    def __repr__(self) -> str:  # never the private part
        return f"SigningKey(kid={self.kid!r})"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise ShcKeyError(f"the JWK has no '{what}'")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ShcKeyError(f"the JWK's '{what}' is not base64url") from None


def thumbprint(jwk: dict[str, Any]) -> str:
    """The JWK thumbprint (RFC 7638: SHA-256 of the required members, sorted, no spaces)."""
    members = {m: jwk.get(m) for m in _THUMBPRINT_MEMBERS}
    if any(not isinstance(v, str) for v in members.values()):
        raise ShcKeyError("an EC JWK needs crv, kty, x and y")
    text = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(text.encode()).digest())


def public_jwk(jwk: dict[str, Any]) -> dict[str, str]:
    """A key's public JWK as the key set lists it (``kid`` = its thumbprint)."""
    public_key(jwk)  # (checks it)
    out = {m: str(jwk[m]) for m in ("kty", "crv", "x", "y")}
    return {**out, "kid": thumbprint(out), "use": "sig", "alg": "ES256"}


def public_key(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a JWK; ``ShcKeyError`` when it is not one."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != CURVE:
        raise ShcKeyError("the JWK is not an EC key on P-256 (ES256)")
    x, y = _unb64(jwk.get("x"), "x"), _unb64(jwk.get("y"), "y")
    if len(x) != _COORDINATE_BYTES or len(y) != _COORDINATE_BYTES:
        raise ShcKeyError("the JWK's x and y must be 32 bytes each")
    try:
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        )
        return numbers.public_key()
    except ValueError:
        raise ShcKeyError("the JWK's point is not on the P-256 curve") from None


def signing_key(jwk: dict[str, Any]) -> SigningKey:
    """A private JWK as a ``SigningKey``."""
    public = public_jwk(jwk)
    d = _unb64(jwk.get("d"), "d")
    try:
        private = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())
    except ValueError:
        raise ShcKeyError("the JWK's 'd' is not a P-256 private key") from None
    if public_jwk(_jwk_of(private)) != public:
        raise ShcKeyError("the JWK's 'd' does not match its x and y")
    return SigningKey(public["kid"], private, public)


def _jwk_of(private: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = private.private_numbers()
    point = numbers.public_numbers
    jwk = {
        "kty": "EC",
        "crv": CURVE,
        "x": _b64(point.x.to_bytes(_COORDINATE_BYTES, "big")),
        "y": _b64(point.y.to_bytes(_COORDINATE_BYTES, "big")),
    }
    jwk["d"] = _b64(numbers.private_value.to_bytes(_COORDINATE_BYTES, "big"))
    return jwk


def generate() -> dict[str, str]:
    """A new private JWK (P-256), with its ``kid``."""
    jwk = _jwk_of(ec.generate_private_key(ec.SECP256R1()))
    return {**jwk, "kid": thumbprint(jwk), "use": "sig", "alg": "ES256"}


def read_key_file(path: Path) -> tuple[SigningKey, list[dict[str, str]]]:
    """A key file: a private JWK, or a JWK Set whose first private key signs (the others,
    private or public, are listed too). Returns the signing key and every public JWK."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ShcKeyError(f"cannot read PGX_CDS_SHC_KEY {path}: {exc.strerror}") from None
    except ValueError:
        raise ShcKeyError(f"PGX_CDS_SHC_KEY {path} is not JSON") from None
    jwks = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
    if not isinstance(jwks, list) or not all(isinstance(k, dict) for k in jwks):
        raise ShcKeyError(f"PGX_CDS_SHC_KEY {path}: not a JWK or a JWK Set")
    private = next((k for k in jwks if "d" in k), None)
    if private is None:
        raise ShcKeyError(f"PGX_CDS_SHC_KEY {path} has no private key ('d')")
    key = signing_key(private)
    listed = [public_jwk(k) for k in jwks]
    return key, listed


def _texts(jwk: dict[str, str]) -> shc_keys.KeyTexts:
    return jwk["kid"], json.dumps(jwk), json.dumps(public_jwk(jwk))


class Issuer:
    """The issuer's keys for one process: the signing key and the key set, read once (the
    file) or from the database (made there once); ``refresh`` reads the database again
    (after a rotation)."""

    def __init__(self, key_file: Path | None, database: Engine | None) -> None:
        if key_file is None and database is None:
            raise ShcKeyError("no PGX_CDS_SHC_KEY and no database to keep a key in")
        self._file = read_key_file(key_file) if key_file is not None else None
        self._database = database
        self._lock = threading.Lock()
        self._signing: SigningKey | None = self._file[0] if self._file else None
        self._stored: list[dict[str, str]] | None = None

    def signing(self) -> SigningKey:
        """The key cards are signed with (made and kept in the database the first time)."""
        with self._lock:
            if self._signing is None:
                assert self._database is not None
                _, private, _ = shc_keys.current(self._database, lambda: _texts(generate()))
                self._signing = signing_key(json.loads(private))
            return self._signing

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The key set: the configured keys, then those kept in the database (public parts;
        with a configured key, a database that cannot be read leaves them out)."""
        listed = list(self._file[1]) if self._file else []
        stored: list[dict[str, str]] = []
        if self._database is not None:
            if self._file is None:
                self.signing()  # (a key set is never empty: the key is made first)
            with self._lock:
                if self._stored is None:
                    try:
                        texts = shc_keys.public(self._database)
                    except SQLAlchemyError:
                        if self._file is None:
                            raise
                        texts = []
                    self._stored = [json.loads(t) for t in texts]
                stored = self._stored
        kids = {k["kid"] for k in listed}
        return {"keys": listed + [k for k in stored if k["kid"] not in kids]}

    def derived_secret(self, purpose: bytes) -> bytes:
        """A secret for ``purpose`` derived from the signing key (HMAC of its private value):
        the same in every replica, changed by a rotation."""
        value = self.signing().private.private_numbers().private_value
        return hmac.new(value.to_bytes(_COORDINATE_BYTES, "big"), purpose, hashlib.sha256).digest()

    def rotate(self) -> SigningKey:
        """A new key kept in the database signs from now on; the old ones stay listed."""
        if self._file is not None or self._database is None:
            raise ShcKeyError("the signing key is configured (PGX_CDS_SHC_KEY): rotate it there")
        _, private, _ = shc_keys.rotate(self._database, lambda: _texts(generate()))
        with self._lock:
            self._signing = signing_key(json.loads(private))
            self._stored = None
        return self._signing

    def refresh(self) -> None:
        with self._lock:
            if self._file is None:
                self._signing = None
            self._stored = None
