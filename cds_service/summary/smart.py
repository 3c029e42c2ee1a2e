"""The SMART on FHIR EHR launch of the patient's summary page (SMART App Launch 2.x).

1. ``/smart/launch?iss=...&launch=...``: ``iss`` must be a FHIR server the service may read
   (checked as a hook request's ``fhirServer``); its ``.well-known/smart-configuration``
   names the authorization and token endpoints. The browser is sent to the authorization
   endpoint with a PKCE challenge (S256), ``state``, ``aud`` = ``iss`` and the ``launch``.
2. ``/smart/callback?code=...&state=...``: the code is exchanged at the token endpoint with
   the PKCE verifier; the EHR's access token reads the patient in context, the page is
   built (``build.summarise``) and sent; the token is then forgotten.

Nothing is stored on the server: what the callback needs (state, verifier, ``iss``, token
endpoint) travels in a cookie that is HttpOnly, Secure (unless the public URL is plain http
on this machine), SameSite=Lax, lives ten minutes and is authenticated (HMAC with a secret
derived from the issuer's signing key, shared by every replica). No token, code or patient
id reaches a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from ..fhir.limits import FetchFailed
from ..fhir.reads import bounded_get

COOKIE = "pgx_smart_launch"
COOKIE_SECONDS = 600
#: The launch context and the user; then read access to what the page reads: the patient and
#: results, and what its patient-view call reads besides (the age and chart rules).
CONTEXT_SCOPES = "launch openid fhirUser"
READ = (
    "Patient",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "Condition",
    "Procedure",
)
HTTP_SECONDS = 10.0
MAX_BYTES = 256 * 1024


class LaunchError(Exception):
    """A launch that cannot go on (a 4xx: ``status``, and why in words)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Pending:
    """What the callback needs, carried by the cookie."""

    state: str
    verifier: str
    iss: str
    token_endpoint: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def challenge(verifier: str) -> str:
    """PKCE S256: base64url(SHA-256(verifier)) (RFC 7636)."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def seal(pending: Pending, secret: bytes) -> str:
    body = _b64(json.dumps(pending.__dict__, separators=(",", ":")).encode())
    tag = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"{body}.{tag}"


def unseal(value: str | None, secret: bytes, now: float | None = None) -> Pending:
    if not value or value.count(".") != 1:
        raise LaunchError("no launch in progress in this browser: open the app from the EHR")
    body, tag = value.split(".")
    expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(tag, expected):
        raise LaunchError("the launch cookie is not this service's: open the app again")
    try:
        pending = Pending(**json.loads(_unb64(body)))
    except (ValueError, TypeError):
        raise LaunchError("the launch cookie cannot be read: open the app again") from None
    if pending.expires < (now if now is not None else time.time()):
        raise LaunchError("the launch took too long: open the app again")
    return pending


def _json(session: requests.Session, url: str) -> dict[str, Any]:
    try:
        status, raw = bounded_get(
            session,
            url,
            deadline=time.monotonic() + HTTP_SECONDS,
            max_bytes=MAX_BYTES,
            timeout=HTTP_SECONDS,
            headers={"Accept": "application/json"},
        )
    except FetchFailed:
        raise LaunchError("the EHR's SMART configuration could not be read", 502) from None
    if status != 200:
        raise LaunchError(f"the EHR's SMART configuration answered HTTP {status}", 502)
    try:
        found = json.loads(raw)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise LaunchError("the EHR's SMART configuration is not a JSON object", 502)
    return found


def scopes(config: dict[str, Any]) -> str:
    """The scopes asked for: SMART v1's ``patient/X.read``, or v2's ``patient/X.rs`` where the
    EHR's configuration says it grants v2 permissions only (``capabilities``)."""
    capabilities = config.get("capabilities")
    v2_only = (
        isinstance(capabilities, list)
        and "permission-v2" in capabilities
        and "permission-v1" not in capabilities
    )
    suffix = "rs" if v2_only else "read"
    return " ".join([CONTEXT_SCOPES, *(f"patient/{kind}.{suffix}" for kind in READ)])


def start(
    session: requests.Session,
    iss: str,
    launch: str,
    *,
    client_id: str,
    redirect_uri: str,
    secret: bytes,
) -> tuple[str, str]:
    """The authorization URL to send the browser to, and the sealed cookie."""
    config = _json(session, iss.rstrip("/") + "/.well-known/smart-configuration")
    authorize, token = config.get("authorization_endpoint"), config.get("token_endpoint")
    if not isinstance(authorize, str) or not isinstance(token, str):
        raise LaunchError("the EHR's SMART configuration names no authorization endpoint", 502)
    methods = config.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise LaunchError("the EHR does not support PKCE with S256", 502)
    verifier = _b64(secrets.token_bytes(48))
    state = _b64(secrets.token_bytes(24))
    pending = Pending(state, verifier, iss, token, int(time.time()) + COOKIE_SECONDS)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "launch": launch,
            "scope": scopes(config),
            "state": state,
            "aud": iss,
            "code_challenge": challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in authorize else "?"
    return f"{authorize}{separator}{query}", seal(pending, secret)


def finish(
    session: requests.Session,
    pending: Pending,
    code: str,
    state: str,
    *,
    client_id: str,
    redirect_uri: str,
) -> tuple[str, str]:
    """The EHR's access token and the patient in context, for the code the EHR sent."""
    if not hmac.compare_digest(state, pending.state):
        raise LaunchError("the launch's state does not match: open the app again")
    try:
        answer = session.post(
            pending.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "code_verifier": pending.verifier,
            },
            headers={"Accept": "application/json"},
            timeout=HTTP_SECONDS,
            allow_redirects=False,
        )
        body = answer.json() if len(answer.content) <= MAX_BYTES else None
    except (requests.RequestException, ValueError):
        raise LaunchError("the EHR's token endpoint could not be read", 502) from None
    if answer.status_code != 200 or not isinstance(body, dict):
        raise LaunchError(f"the EHR refused the code (HTTP {answer.status_code})", 502)
    token, patient = body.get("access_token"), body.get("patient")
    if not isinstance(token, str) or not token:
        raise LaunchError("the EHR's answer has no access token", 502)
    if not isinstance(patient, str) or not patient:
        raise LaunchError("the EHR launched no patient (no 'patient' in its answer)", 502)
    return token, patient
