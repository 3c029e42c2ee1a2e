"""SMART Health Cards 1.0 (HL7 SMART Health Cards and Links IG, STU1): the verifiable
credential, its JWS, the ``shc:/`` numeric form and the QR code.

* Payload: ``{"iss", "nbf", "vc": {"type": [health-card], "credentialSubject":
  {"fhirVersion": "4.0.1", "fhirBundle": ...}}}``, minified JSON, compressed with raw
  DEFLATE (no zlib header: ``zip: DEF``).
* JWS: compact serialisation, ES256 (P-256), header ``{"alg": "ES256", "zip": "DEF", "kid"}``
  with ``kid`` the key's JWK thumbprint (RFC 7638, ``keys.thumbprint``).
* ``shc:/`` + two digits per JWS character (its code minus 45), which a QR code holds in
  numeric mode; one QR code holds a JWS of at most 1195 characters (version 22), as the IG
  asks of a single-chunk card.
* Verifying: the ``kid`` must be in the issuer's key set (``/.well-known/jwks.json``), the
  signature must hold, ``nbf`` must not lie in the future, and the payload must have the
  structure above. Every failure is a ``CardError`` saying what is wrong.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from dataclasses import dataclass
from typing import Any

import jwt
import segno
from jwt.api_jws import PyJWS
from segno import consts

from .keys import SigningKey, public_key

HEALTH_CARD = "https://smarthealth.cards#health-card"
FHIR_VERSION = "4.0.1"
PREFIX = "shc:/"
#: The longest JWS one QR code may hold (SMART Health Cards: version 22, error level L).
MAX_SINGLE_JWS = 1195
#: A card whose decompressed payload is larger than this is refused (a deflate bomb).
MAX_PAYLOAD = 256 * 1024
#: Clock skew allowed for ``nbf`` (seconds).
LEEWAY = 300

_NUMERIC = re.compile(r"^shc:/(\d\d)+$")


class CardError(ValueError):
    """A card that is not a valid SMART Health Card from the key set given (why, in words)."""


@dataclass(frozen=True)
class VerifiedCard:
    issuer: str
    kid: str
    issued_at: int
    bundle: dict[str, Any]
    types: list[str]


def credential(issuer: str, bundle: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The verifiable credential's JWT payload for ``bundle``."""
    return {
        "iss": issuer,
        "nbf": int(now if now is not None else time.time()),
        "vc": {
            "type": [HEALTH_CARD],
            "credentialSubject": {"fhirVersion": FHIR_VERSION, "fhirBundle": bundle},
        },
    }


def deflate(data: bytes) -> bytes:
    """Raw DEFLATE (RFC 1951: no zlib header or checksum), as ``zip: DEF`` means."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def inflate(data: bytes) -> bytes:
    unpacker = zlib.decompressobj(-15)
    try:
        out = unpacker.decompress(data, MAX_PAYLOAD + 1)
    except zlib.error as exc:
        raise CardError(f"the payload is not raw DEFLATE data ({exc})") from None
    if len(out) > MAX_PAYLOAD or unpacker.unconsumed_tail:
        raise CardError(f"the payload is larger than {MAX_PAYLOAD} bytes once inflated")
    return out


def sign(payload: dict[str, Any], key: SigningKey) -> str:
    """The compact JWS of ``payload`` (minified, deflated), signed ES256 with ``key``."""
    body = deflate(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    return PyJWS().encode(
        body,
        key.private,
        algorithm="ES256",
        headers={"typ": None, "zip": "DEF", "kid": key.kid},
    )


def to_numeric(jws: str) -> str:
    """``shc:/`` and two digits per character (its code point minus 45)."""
    return PREFIX + "".join(f"{ord(c) - 45:02d}" for c in jws)


def from_numeric(text: str) -> str:
    """The JWS a ``shc:/`` string holds (a QR reader's text: surrounding space allowed)."""
    text = text.strip()
    if text.lower().startswith(PREFIX) and not _NUMERIC.match(PREFIX + text[len(PREFIX) :]):
        if re.match(r"^shc:/\d+/\d+/", text, re.I):
            raise CardError("a card in several QR chunks is not supported: scan a single one")
        raise CardError("after 'shc:/' a card has pairs of digits only")
    if not text.lower().startswith(PREFIX):
        raise CardError("a SMART Health Card starts with 'shc:/'")
    digits = text[len(PREFIX) :]
    pairs = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    if any(p > 77 for p in pairs):  # 'z' (122) - 45
        raise CardError("a digit pair is out of range (no character of a JWS)")
    return "".join(chr(p + 45) for p in pairs)


def qr_svg(numeric: str, *, scale: int = 4, title: str | None = None) -> str:
    """The QR code of a ``shc:/`` string as an SVG element: ``shc:/`` in byte mode, the
    digits in numeric mode, error correction level L (as the IG's examples)."""
    code = _qr(numeric)
    svg = code.svg_inline(
        scale=scale, border=4, title=title, dark="#000", light="#fff", omitsize=True
    )
    return str(svg)


def qr_png(numeric: str, path: str, *, scale: int = 4) -> None:
    _qr(numeric).save(path, kind="png", scale=scale, border=4)


def _qr(numeric: str) -> segno.QRCode:
    if not numeric.startswith(PREFIX):
        raise CardError("not a shc:/ string")
    segments = [(PREFIX, consts.MODE_BYTE), (numeric[len(PREFIX) :], consts.MODE_NUMERIC)]
    return segno.make(
        segments,  # type: ignore[arg-type]  # (segno takes a list of segments, as documented)
        error="l",
        boost_error=False,
        micro=False,
    )


def verify(text: str, jwks: dict[str, Any], *, now: float | None = None) -> VerifiedCard:
    """Check a card (``shc:/…`` or the JWS itself) against the issuer's key set ``jwks``:
    its ``kid``, its signature, ``nbf``, and the payload's structure."""
    jws = from_numeric(text) if text.strip().lower().startswith(PREFIX) else text.strip()
    if jws.count(".") != 2:
        raise CardError("not a compact JWS (three parts separated by dots)")
    try:
        header = jwt.get_unverified_header(jws)
    except jwt.PyJWTError as exc:
        raise CardError(f"the JWS header cannot be read ({exc})") from None
    if header.get("alg") != "ES256":
        raise CardError(f"the JWS is signed with {header.get('alg')!r}, not ES256")
    if header.get("zip") != "DEF":
        raise CardError("the JWS header lacks zip: DEF (the payload must be compressed)")
    kid = header.get("kid")
    key = next(
        (k for k in _keys(jwks) if isinstance(kid, str) and k.get("kid") == kid),
        None,
    )
    if key is None or not isinstance(kid, str):
        raise CardError("the card's key (kid) is not in the issuer's key set")
    try:
        signed = PyJWS().decode_complete(jws, key=public_key(key), algorithms=["ES256"])
    except (jwt.PyJWTError, ValueError) as exc:
        raise CardError(f"the signature does not hold ({exc})") from None
    try:
        payload = json.loads(inflate(signed["payload"]))
    except ValueError as exc:
        if isinstance(exc, CardError):
            raise
        raise CardError("the payload is not JSON") from None
    return _checked(payload, kid, now)


def _keys(jwks: dict[str, Any]) -> list[dict[str, Any]]:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        raise CardError("the key set has no 'keys' list")
    return [k for k in keys if isinstance(k, dict)]


def _checked(payload: Any, kid: str, now: float | None) -> VerifiedCard:
    if not isinstance(payload, dict):
        raise CardError("the payload is not a JSON object")
    issuer, nbf, vc = payload.get("iss"), payload.get("nbf"), payload.get("vc")
    if not isinstance(issuer, str) or not issuer:
        raise CardError("the payload has no issuer (iss)")
    if not isinstance(nbf, int | float) or isinstance(nbf, bool):
        raise CardError("the payload has no issue time (nbf)")
    if nbf > (now if now is not None else time.time()) + LEEWAY:
        raise CardError("the card is not valid yet (nbf lies in the future)")
    if not isinstance(vc, dict):
        raise CardError("the payload has no verifiable credential (vc)")
    types = vc.get("type")
    if not isinstance(types, list) or HEALTH_CARD not in types:
        raise CardError(f"vc.type does not include {HEALTH_CARD}")
    subject = vc.get("credentialSubject")
    if not isinstance(subject, dict) or not isinstance(subject.get("fhirVersion"), str):
        raise CardError("vc.credentialSubject has no fhirVersion")
    bundle = subject.get("fhirBundle")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise CardError("vc.credentialSubject.fhirBundle is not a FHIR Bundle")
    if not isinstance(bundle.get("entry"), list):
        raise CardError("the Bundle has no entries")
    return VerifiedCard(issuer, kid, int(nbf), bundle, [t for t in types if isinstance(t, str)])


def issue(bundle: dict[str, Any], issuer: str, key: SigningKey, now: float | None = None) -> str:
    """The ``shc:/`` card for ``bundle``; raises ``CardError`` if it would not fit one QR."""
    jws = sign(credential(issuer, bundle, now), key)
    if len(jws) > MAX_SINGLE_JWS:
        raise CardError(
            f"the card's JWS has {len(jws)} characters: more than one QR code holds "
            f"({MAX_SINGLE_JWS})"
        )
    return to_numeric(jws)
