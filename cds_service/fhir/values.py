"""Safe access to FHIR JSON as clients really send it.

Every helper accepts any JSON value and returns the type it promises: a wrong type is read
as absent, never an exception.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any


def objects(value: Any) -> list[dict[str, Any]]:
    """The JSON objects of a FHIR array (a lone object counts as one; anything else, none)."""
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def codes(concept: Any) -> list[str]:
    """'system|code' of each coding of a CodeableConcept."""
    return [
        f"{as_str(c.get('system'))}|{as_str(c.get('code'))}"
        for c in objects(as_dict(concept).get("coding"))
    ]


def texts(concept: Any) -> list[str]:
    """The text, then each coding's display and code, of a CodeableConcept."""
    concept = as_dict(concept)
    out = [as_str(c.get(k)) for c in objects(concept.get("coding")) for k in ("display", "code")]
    out.insert(0, as_str(concept.get("text")))
    return [t for t in out if t]


def value_texts(obs: dict[str, Any]) -> list[str]:
    """The non-empty texts of an Observation's value: its CodeableConcept's (``texts``),
    then its string."""
    found = [*texts(obs.get("valueCodeableConcept")), as_str(obs.get("valueString"))]
    return [t for t in found if t]


def describe(value: Any) -> str:
    if isinstance(value, str):
        return value
    found = texts(value)
    return found[0] if found else "?"


def is_about(resource: dict[str, Any], patient_id: str, fhir_base: str | None) -> bool:
    """Is ``resource`` (an Observation, a MedicationRequest) about the patient in context?"""
    subject = resource.get("subject")
    if subject is None:
        subject = resource.get("patient")  # DSTU2 MedicationOrder
    ref = as_str(as_dict(subject).get("reference")).split("/_history/")[0]
    if ref == f"Patient/{patient_id}":
        return True
    # An absolute reference must point at the request's own FHIR server.
    return bool(fhir_base) and ref == f"{(fhir_base or '').rstrip('/')}/Patient/{patient_id}"


def effective_date(obs: dict[str, Any]) -> tuple[datetime | None, str | None]:
    """When a result was observed (effective, else issued), and its date as written."""
    period = as_dict(obs.get("effectivePeriod"))
    for value in (
        obs.get("effectiveDateTime"),
        obs.get("effectiveInstant"),
        period.get("start"),
        obs.get("issued"),
    ):
        if isinstance(value, str) and value:
            parsed = parse_date(value)
            if parsed is not None:
                return parsed, value[:10]
    return None, None


@lru_cache(maxsize=4096)
def parse_date(value: str) -> datetime | None:
    """A FHIR date or dateTime (year, year-month, date, or full) as an aware datetime
    (cached: the same dates come back call after call)."""
    text = value.strip()[:64].replace("Z", "+00:00")
    if re.fullmatch(r"\d{4}", text):
        text += "-01-01"
    elif re.fullmatch(r"\d{4}-\d{2}", text):
        text += "-01"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
