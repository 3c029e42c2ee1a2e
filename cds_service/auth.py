"""CDS client authentication: the signed JWT of CDS Hooks 2.0.1 §Trusting CDS Clients.

Off unless ``PGX_CDS_TRUSTED_ISSUERS`` names at least one client. Then every call to
discovery, a service or feedback must carry ``Authorization: Bearer <JWT>`` with:

* an asymmetric algorithm (ES/RS/PS 256-512; never ``none`` or HMAC) and a ``kid``;
* ``iss`` among the trusted issuers, and a ``jku`` (if any) equal to that issuer's JWKS URL;
* a signature that verifies against the issuer's JWKS (fetched, cached, refetched once
  when a ``kid`` is new);
* ``aud`` equal to the URL called, ``exp`` in the future, ``iat`` present;
* a ``jti`` not seen before within its lifetime (replay).

A failure is a 401 whose body says why; the token itself is never logged.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

from .errors import ClientError

ALLOWED_ALGORITHMS = [
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
]
JWKS_TTL = 3600.0
JWKS_RETRY = 30.0  # after a failed key-set fetch, wait this long before fetching again
JWKS_MAX_BYTES = 1_000_000
LEEWAY = 60  # seconds of clock skew tolerated
MAX_LIFETIME = 3600  # a client JWT valid longer than this is refused (spec: ~5 minutes)


class Unauthorized(ClientError):
    status = 401


@dataclass
class JwtVerifier:
    """Checks client JWTs against trusted issuers (``iss`` -> JWKS URL)."""

    issuers: dict[str, str]
    timeout: float = 3.0
    session: requests.Session = field(default_factory=requests.Session)
    _keys: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _seen: dict[str, float] = field(default_factory=dict)
    _refreshed: dict[str, float] = field(default_factory=dict)
    _failed: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return bool(self.issuers)

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The verified claims, or ``Unauthorized`` naming what is wrong."""
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized(
                "this service requires a CDS Hooks client JWT (Authorization: Bearer)"
            )
        token = authorization[len("Bearer ") :].strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a JWT") from None
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise Unauthorized(f"JWT algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the JWT header has no kid")
        issuer = unverified.get("iss")
        jwks_url = self.issuers.get(issuer) if isinstance(issuer, str) else None
        if jwks_url is None:
            raise Unauthorized("the JWT issuer is not trusted by this service")
        if header.get("jku") not in (None, jwks_url):
            raise Unauthorized("the JWT jku is not the trusted key set of its issuer")

        key = self._key(jwks_url, kid, header["alg"])
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[header["alg"]],
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the JWT is not valid: {exc}") from None
        if float(claims["exp"]) - float(claims["iat"]) > MAX_LIFETIME:
            raise Unauthorized("the JWT is valid for too long (exp - iat over one hour)")
        self._check_replay(f"{issuer}|{claims['jti']}", float(claims["exp"]))
        return claims

    def _key(self, jwks_url: str, kid: str, alg: str) -> Any:
        for refresh in (False, True):
            keys = self._jwks(jwks_url, refresh).get("keys")
            for jwk in keys if isinstance(keys, list) else []:
                if isinstance(jwk, dict) and jwk.get("kid") == kid:
                    try:  # the key must suit the token's algorithm (an RSA key is no ES256 key)
                        return jwt.PyJWK(jwk, algorithm=alg).key
                    except (jwt.PyJWTError, ValueError, TypeError):
                        raise Unauthorized(
                            "the issuer's key for this kid does not fit the JWT algorithm"
                        ) from None
        raise Unauthorized("no key with the JWT's kid in the issuer's key set")

    def _jwks(self, url: str, refresh: bool) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._keys.get(url)
            failed = self._failed.get(url)
        if cached and not refresh and now - cached[0] < JWKS_TTL:
            return cached[1]
        if failed is not None and now - failed < JWKS_RETRY:
            # the key-set host is failing: don't let every forged request wait on it
            if cached:
                return cached[1]
            raise Unauthorized("the issuer's key set could not be fetched")
        if cached and refresh:
            with self._lock:
                last = self._refreshed.get(url)
                if last is not None and now - last < 10:
                    return cached[1]  # unknown kids refetch the key set at most every 10 s
                self._refreshed[url] = now
        try:
            with self.session.get(
                url, timeout=self.timeout, allow_redirects=False, stream=True
            ) as response:
                response.raise_for_status()
                raw = response.raw.read(JWKS_MAX_BYTES + 1, decode_content=True)
            if len(raw) > JWKS_MAX_BYTES:
                raise ValueError("key set too large")
            keys = json.loads(raw)
            if not isinstance(keys, dict):
                raise ValueError("not a JSON object")
        except (requests.RequestException, ValueError):
            with self._lock:
                self._failed[url] = now
                if cached:  # keep using the old keys while the host is down
                    self._keys[url] = (now, cached[1])
            if cached:
                return cached[1]
            raise Unauthorized("the issuer's key set could not be fetched") from None
        with self._lock:
            self._keys[url] = (now, keys)
            self._failed.pop(url, None)
        return keys

    def _check_replay(self, key: str, expires: float) -> None:
        now = time.time()
        with self._lock:
            for old in [k for k, exp in self._seen.items() if exp + LEEWAY < now]:
                del self._seen[old]
            if key in self._seen:
                raise Unauthorized("the JWT was already used (jti replay)")
            self._seen[key] = expires
