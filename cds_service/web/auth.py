"""CDS client authentication: the signed JWT of CDS Hooks 2.0.1 §Trusting CDS Clients.

Off unless ``PGX_CDS_TRUSTED_ISSUERS`` names at least one client. Then every call to
discovery, a service or feedback must carry ``Authorization: Bearer <JWT>`` with:

* an asymmetric algorithm (ES/RS/PS 256-512; never ``none`` or HMAC) and a ``kid``;
* ``iss`` among the trusted issuers, and a ``jku`` (if any) equal to that issuer's JWKS URL;
* a signature that verifies against the issuer's JWKS (fetched, cached, refetched once
  when a ``kid`` is new);
* the algorithm the issuer's key names (its JWK ``alg``; for a key without one, the
  curve's ES algorithm or an RSA algorithm), never just the token's word for it;
* ``aud`` equal to the URL called (a list naming others is refused), numeric ``exp`` and
  ``iat``, a non-empty ``jti`` not seen before within its lifetime at any replica, before
  or after a restart (``replay.py``: a table in the service's database).

A failure is a 401 whose body says why; the token itself is never logged.

Key sets are cached for their ``Cache-Control: max-age`` (between one minute and an hour;
five minutes without one), so a key the issuer removed stops working within that time, and
refetched at once (at most every 10 s) for a ``kid`` not in them. While the key-set host
fails, the cached keys keep working for at most ``JWKS_STALE`` past their expiry, then are
dropped. A replica without usable keys for an issuer answers that issuer's calls 503 with
``Retry-After`` (its keys could not be fetched: no fault of the caller) and tries again
after ``JWKS_RETRY_EMPTY`` seconds (with keys: ``JWKS_RETRY``). ``warm`` fetches every key
set at start and for readiness: a replica is ready only with every issuer's keys.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from ..core.errors import ClientError, ServiceUnavailable
from ..core.inline import would_wait
from ..fhir.limits import FetchFailed
from ..fhir.reads import bounded_get
from ..fhir.session import guarded_session
from ..store.replay import ReplayCache

log = logging.getLogger("cds_service.auth")

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
# A key without "alg": the algorithms its type allows (EC: fixed by the curve).
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
RSA_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
JWKS_TTL = 300.0  # a key set without Cache-Control: max-age is kept this long
JWKS_MIN_TTL = 60.0  # max-age is honoured within these bounds
JWKS_MAX_TTL = 3600.0
JWKS_STALE = 900.0  # while its host fails, a key set is used this long past its expiry
JWKS_RETRY = 30.0  # after a failed key-set fetch, wait this long before fetching again
JWKS_RETRY_EMPTY = 2.0  # ... when there are no keys to use meanwhile (calls answer 503)
JWKS_BUDGET = 2.0  # seconds in total for one key-set fetch (a dripping host is cut off)
JWKS_MAX_BYTES = 1_000_000
LEEWAY = 60  # seconds of clock skew tolerated
MAX_LIFETIME = 3600  # a client JWT valid longer than this is refused (spec: ~5 minutes)


class Unauthorized(ClientError):
    status = 401


class KeySetUnavailable(ServiceUnavailable):
    """The issuer's key set could not be fetched and no usable copy is cached: a 503 (the
    caller's token may be fine), retried soon."""

    def __init__(self) -> None:
        super().__init__(
            "the issuer's key set could not be fetched; please retry",
            retry_after=max(1, math.ceil(JWKS_RETRY_EMPTY)),
        )


@dataclass(frozen=True)
class _Cached:
    fetched: float  # time.monotonic()
    expires: float
    keys: dict[str, Any]


def max_age(cache_control: str | None) -> float:
    """How long a key set may be kept, from its ``Cache-Control`` (``no-store``/``no-cache``:
    the least), bounded by ``JWKS_MIN_TTL`` and ``JWKS_MAX_TTL``."""
    seconds = JWKS_TTL
    for directive in (cache_control or "").lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return JWKS_MIN_TTL
        if name == "max-age":
            try:
                seconds = float(int(value.strip().strip('"')))
            except ValueError:
                continue
    return min(max(seconds, JWKS_MIN_TTL), JWKS_MAX_TTL)


def _memory_replay_cache() -> ReplayCache:
    """For a verifier without a database (tests, tools): one process only."""
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    return ReplayCache(engine)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class JwtVerifier:
    """Checks client JWTs against trusted issuers (``iss`` -> JWKS URL)."""

    issuers: dict[str, str]
    timeout: float = 3.0
    session: requests.Session = field(default_factory=guarded_session)
    replay: ReplayCache = field(default_factory=_memory_replay_cache)
    _keys: dict[str, _Cached] = field(default_factory=dict)
    _refreshed: dict[str, float] = field(default_factory=dict)
    _failed: dict[str, float] = field(default_factory=dict)
    _fetching: dict[str, threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return bool(self.issuers)

    def verify(
        self, authorization: str | None, audience: str, also: str | None = None
    ) -> dict[str, Any]:
        """The verified claims, or ``Unauthorized`` naming what is wrong. ``aud`` must be
        ``audience`` (the URL called) or ``also`` (for feedback: the service's own URL, which
        Epic keeps as the audience when it appends ``/feedback``)."""
        audiences = [audience] if also is None else [audience, also]
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():  # RFC 6750: scheme case-insensitive
            raise Unauthorized(
                "this service requires a CDS Hooks client JWT (Authorization: Bearer)"
            )
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise Unauthorized("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise Unauthorized(
                f"JWT algorithm {str(alg)[:20]!r} is not accepted",
                logged="the JWT algorithm is not accepted",
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the JWT header has no kid")
        issuer = unverified.get("iss")
        jwks_url = self.issuers.get(issuer) if isinstance(issuer, str) else None
        if jwks_url is None or not isinstance(issuer, str):
            raise Unauthorized("the JWT issuer is not trusted by this service")
        if header.get("jku") not in (None, jwks_url):
            raise Unauthorized("the JWT jku is not the trusted key set of its issuer")

        key = self._key(jwks_url, kid, alg)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],  # the key's algorithm: checked in _key
                audience=audiences,
                issuer=issuer,
                leeway=LEEWAY,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            # the library's message is for the caller; the log gets its kind only
            raise Unauthorized(
                f"the JWT is not valid: {exc}",
                logged=f"the JWT is not valid ({type(exc).__name__})",
            ) from None
        except (ValueError, TypeError, OverflowError):
            raise Unauthorized("the JWT is not valid: malformed claims") from None
        aud = claims["aud"]
        if isinstance(aud, list) and any(a not in audiences for a in aud):
            raise Unauthorized("the JWT aud names audiences other than this service")
        if not _number(claims["exp"]) or not _number(claims["iat"]):
            raise Unauthorized("the JWT exp and iat must be numbers (seconds since 1970)")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti.strip():
            raise Unauthorized("the JWT jti must be a non-empty string")
        if float(claims["exp"]) - float(claims["iat"]) > MAX_LIFETIME:
            raise Unauthorized("the JWT is valid for too long (exp - iat over one hour)")
        expires = int(min(float(claims["exp"]), time.time() + MAX_LIFETIME)) + LEEWAY + 1
        if not self.replay.first_use(issuer, jti, expires):
            raise Unauthorized("the JWT was already used (jti replay)")
        return claims

    def _key(self, jwks_url: str, kid: str, alg: str) -> Any:
        for refresh in (False, True):
            keys = self._jwks(jwks_url, refresh).get("keys")
            for jwk in keys if isinstance(keys, list) else []:
                if isinstance(jwk, dict) and jwk.get("kid") == kid:
                    if alg not in _key_algorithms(jwk):
                        raise Unauthorized(
                            "the JWT algorithm does not fit the issuer's key for this kid"
                        )
                    try:
                        return jwt.PyJWK(jwk, algorithm=alg).key
                    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                        raise Unauthorized(
                            "the issuer's key for this kid does not fit the JWT algorithm"
                        ) from None
        raise Unauthorized("no key with the JWT's kid in the issuer's key set")

    def warm(self) -> list[str]:
        """Fetch the key set of every issuer that has no usable one (at start, and for
        readiness); the issuers still without keys."""
        missing = []
        for issuer, url in self.issuers.items():
            try:
                self._jwks(url, refresh=False)
            except (KeySetUnavailable, Unauthorized):
                missing.append(issuer)
        return missing

    def _usable(self, url: str, now: float) -> _Cached | None:
        """The cached key set, unless it is past its expiry by more than ``JWKS_STALE``
        (then dropped: a key set host that stays down does not keep old keys valid)."""
        with self._lock:
            cached = self._keys.get(url)
            if cached is not None and now > cached.expires + JWKS_STALE:
                del self._keys[url]
                log.warning("an issuer's key set expired while its host failed: dropped")
                return None
        return cached

    def _jwks(self, url: str, refresh: bool) -> dict[str, Any]:
        """The issuer's key set: cached; fetched by one thread at a time per issuer (the
        others use the cached keys or wait for that fetch's result)."""
        now = time.monotonic()
        cached = self._usable(url, now)
        with self._lock:
            failed = self._failed.get(url)
            fetching = self._fetching.setdefault(url, threading.Lock())
        if cached and not refresh and now < cached.expires:
            return cached.keys
        retry = JWKS_RETRY if cached else JWKS_RETRY_EMPTY
        if failed is not None and now - failed < retry:
            # the key-set host is failing: don't let every forged request wait on it
            if cached:
                return cached.keys
            raise KeySetUnavailable()
        would_wait("an issuer's key set")  # (fetched, or another thread's fetch waited for)
        if cached and refresh:
            with self._lock:
                last = self._refreshed.get(url)
                if last is not None and now - last < 10:
                    return cached.keys  # unknown kids refetch the key set at most every 10 s
                self._refreshed[url] = now
        if not fetching.acquire(blocking=not cached, timeout=JWKS_BUDGET if not cached else -1):
            if cached:
                return cached.keys  # another thread is fetching: use what we have
            raise KeySetUnavailable()
        try:
            with self._lock:  # did the fetch we waited for settle it?
                latest = self._keys.get(url)
                failed = self._failed.get(url)
            if latest is not None and latest.fetched >= now and latest is not cached:
                return latest.keys
            if failed is not None and failed >= now:
                if cached:
                    return cached.keys
                raise KeySetUnavailable()
            return self._fetch(url, cached)
        finally:
            fetching.release()

    def _fetch(self, url: str, cached: _Cached | None) -> dict[str, Any]:
        headers: dict[str, str] = {}
        try:
            status, raw = bounded_get(
                self.session,
                url,
                deadline=time.monotonic() + JWKS_BUDGET,
                max_bytes=JWKS_MAX_BYTES,
                timeout=self.timeout,
                answer_headers=headers,
            )
            if status != 200:
                raise ValueError(f"HTTP {status}")
            keys = json.loads(raw)
            if not isinstance(keys, dict):
                raise ValueError("not a JSON object")
        except (FetchFailed, ValueError, RecursionError):
            with self._lock:
                self._failed[url] = time.monotonic()
            if cached:  # the old keys, until their bounded life ends (``_usable``)
                return cached.keys
            raise KeySetUnavailable() from None
        now = time.monotonic()
        with self._lock:
            self._keys[url] = _Cached(now, now + max_age(headers.get("cache-control")), keys)
            self._failed.pop(url, None)
        return keys


def _key_algorithms(jwk: dict[str, Any]) -> list[str]:
    """The algorithms a token may use with ``jwk``: its own ``alg`` when it names one."""
    alg = jwk.get("alg")
    if alg is not None:
        return [alg] if isinstance(alg, str) and alg in ALLOWED_ALGORITHMS else []
    if jwk.get("kty") == "EC":
        crv = jwk.get("crv")
        return [EC_ALGORITHMS[crv]] if isinstance(crv, str) and crv in EC_ALGORITHMS else []
    if jwk.get("kty") == "RSA":
        return RSA_ALGORITHMS
    return []
