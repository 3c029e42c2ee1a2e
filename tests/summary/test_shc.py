"""SMART Health Cards: encoding, signing and verifying (the IG's rules, and what a forged or
broken card gets)."""

from __future__ import annotations

import base64
import json
import zlib

import pytest

from cds_service.summary import keys, shc

ISSUER = "https://cds.example.org"
BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [{"fullUrl": "resource:0", "resource": {"resourceType": "Patient"}}],
}


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.fixture
def key(signing_jwk):
    return keys.signing_key(signing_jwk)


def test_round_trip_holds_the_bundle_and_follows_the_ig(key):
    card = shc.issue(BUNDLE, ISSUER, key, now=1_700_000_000)
    assert card.startswith("shc:/") and card[5:].isdigit() and len(card[5:]) % 2 == 0
    jws = shc.from_numeric(card)
    header = json.loads(_b64(jws.split(".")[0]))
    assert header == {"alg": "ES256", "zip": "DEF", "kid": key.kid}
    # the payload is raw DEFLATE (no zlib header), minified JSON
    payload = zlib.decompress(_b64(jws.split(".")[1]), -15)
    assert b": " not in payload and json.loads(payload)["iss"] == ISSUER
    assert len(_b64(jws.split(".")[2])) == 64  # ES256: r and s, 32 bytes each (not DER)
    verified = shc.verify(card, {"keys": [key.public_jwk]}, now=1_700_000_000)
    assert verified.issuer == ISSUER and verified.kid == key.kid
    assert verified.bundle == BUNDLE and verified.issued_at == 1_700_000_000
    assert verified.types == [shc.HEALTH_CARD]


def test_numeric_encoding_is_the_ig_s():
    # the IG's rule: each character's code minus 45, two digits ('-' is 00, 'z' is 77)
    assert shc.to_numeric("-.z") == "shc:/000177"
    assert shc.from_numeric("shc:/000177") == "-.z"
    with pytest.raises(shc.CardError, match="pairs of digits"):
        shc.from_numeric("shc:/0001a")
    with pytest.raises(shc.CardError, match="out of range"):
        shc.from_numeric("shc:/99")
    with pytest.raises(shc.CardError, match="several QR chunks"):
        shc.from_numeric("shc:/1/2/0001")


def test_kid_is_the_rfc7638_thumbprint():
    # RFC 7638's method on an EC key: the required members in lexicographic order, no spaces
    jwk = keys.generate()
    members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    import hashlib

    text = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    expected = base64.urlsafe_b64encode(hashlib.sha256(text).digest()).rstrip(b"=").decode()
    assert jwk["kid"] == keys.thumbprint(jwk) == expected
    assert "d" not in keys.public_jwk(jwk)


def test_tampered_signature_is_rejected(key):
    jws = shc.from_numeric(shc.issue(BUNDLE, ISSUER, key))
    head, body, signature = jws.split(".")
    raw = bytearray(_b64(signature))
    raw[5] ^= 0x01
    forged = ".".join([head, body, base64.urlsafe_b64encode(raw).rstrip(b"=").decode()])
    with pytest.raises(shc.CardError, match="signature does not hold"):
        shc.verify(forged, {"keys": [key.public_jwk]})


def test_tampered_payload_is_rejected(key):
    other = {**BUNDLE, "entry": [*BUNDLE["entry"], *BUNDLE["entry"]]}
    good = shc.from_numeric(shc.issue(BUNDLE, ISSUER, key)).split(".")
    swapped = shc.from_numeric(shc.issue(other, ISSUER, key)).split(".")[1]
    with pytest.raises(shc.CardError, match="signature"):
        shc.verify(".".join([good[0], swapped, good[2]]), {"keys": [key.public_jwk]})


def test_wrong_kid_is_rejected(key):
    card = shc.issue(BUNDLE, ISSUER, key)
    stranger = keys.signing_key(keys.generate())
    with pytest.raises(shc.CardError, match="not in the issuer's key set"):
        shc.verify(card, {"keys": [stranger.public_jwk]})
    # another key listed under the card's kid: the signature does not hold
    impostor = {**stranger.public_jwk, "kid": key.kid}
    with pytest.raises(shc.CardError, match="signature does not hold"):
        shc.verify(card, {"keys": [impostor]})


def test_card_from_the_future_and_bad_structure_are_rejected(key):
    card = shc.issue(BUNDLE, ISSUER, key, now=2_000_000_000)
    with pytest.raises(shc.CardError, match="not valid yet"):
        shc.verify(card, {"keys": [key.public_jwk]}, now=1_000_000_000)
    payload = {"iss": ISSUER, "nbf": 1, "vc": {"type": ["x"], "credentialSubject": {}}}
    with pytest.raises(shc.CardError, match=r"vc\.type"):
        shc.verify(shc.sign(payload, key), {"keys": [key.public_jwk]})
    with pytest.raises(shc.CardError, match="key set has no 'keys'"):
        shc.verify(shc.sign(payload, key), {})


def test_a_card_too_large_for_one_qr_code_is_refused(key):
    import os

    big = {**BUNDLE, "entry": [{"resource": {"note": os.urandom(900).hex()}}]}
    with pytest.raises(shc.CardError, match="more than one QR code holds"):
        shc.issue(big, ISSUER, key)


def test_qr_code_reads_back_as_the_card(key, tmp_path):
    zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp (a test dependency) missing")
    from PIL import Image

    card = shc.issue(BUNDLE, ISSUER, key)
    shc.qr_png(card, str(tmp_path / "qr.png"))
    (found,) = zxingcpp.read_barcodes(Image.open(tmp_path / "qr.png").convert("L"))
    assert found.text == card
    assert "<svg" in shc.qr_svg(card) and "viewBox" in shc.qr_svg(card)


def test_an_inflated_payload_bomb_is_refused():
    bomb = shc.deflate(b" " * (shc.MAX_PAYLOAD + 10))
    with pytest.raises(shc.CardError, match="larger than"):
        shc.inflate(bomb)
