"""Log hygiene: values from callers or remote servers reach a log line only through here.

* ``clean`` escapes control characters (a ``%0A`` in a path must not forge a log line) and
  caps the length;
* ``patient_ref`` turns a patient id into an opaque, stable keyed hash (correlate log lines
  without naming the patient; keyed, because patient ids and record numbers are few enough
  to hash them all and look the logged value up);
* ``quiet_http_libraries`` keeps urllib3 from logging full URLs (with ``patient=<id>`` in
  the query) at DEBUG.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from functools import lru_cache
from typing import Any

MAX_LOGGED = 200
_CONTROL = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F]} | {
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
    0x85: "\\x85",
}


def clean(value: Any, limit: int = MAX_LOGGED) -> str:
    """``value`` as one printable line of at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    # lone surrogates would make the log handler itself fail
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_CONTROL)


_ref_key = secrets.token_bytes(32)  # until the service's own key is known (set_ref_key)


def set_ref_key(service_key: bytes) -> None:
    """Derive the key of ``patient_ref`` from the service's key (the card log's, kept in the
    database): every replica then logs the same patient alike."""
    global _ref_key
    _ref_key = hmac.new(service_key, b"patient_ref for logs", hashlib.sha256).digest()


def patient_ref(patient_id: str) -> str:
    """An opaque stand-in for a patient id in logs (same id, same reference)."""
    key = _ref_key  # (read once: a new key mid-call gives the whole reference one key)
    if len(patient_id) <= 64:  # every FHIR id: remembered, the same patient's calls follow
        return _ref(key, patient_id)
    return _ref.__wrapped__(key, patient_id)


@lru_cache(maxsize=1024)
def _ref(key: bytes, patient_id: str) -> str:
    message = patient_id.encode("utf-8", "surrogatepass")
    return f"patient#{hmac.new(key, message, hashlib.sha256).hexdigest()[:12]}"


def quiet_http_libraries() -> None:
    """urllib3 logs every request line (path and query: FHIR searches name the patient) at
    DEBUG, and its warnings name the host the caller chose ("Connection pool is full,
    discarding connection: <host>"); the service logs its own FHIR outcomes without them."""
    for name in ("urllib3", "urllib3.connectionpool"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.ERROR:
            logger.setLevel(logging.ERROR)
