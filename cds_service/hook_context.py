"""Draft orders out of a hook context, whatever shape the client sends.

Handles ``order-select`` / ``order-sign`` (``draftOrders``, ``selections``) and the legacy
``medication-prescribe`` (``medications``); R4 and STU3 ``MedicationRequest``, DSTU2
``MedicationOrder``; a Bundle, an array of resources, or a lone resource (the public
sandbox sends some arrays as single objects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ClientError

MEDICATION_ORDER_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})


@dataclass(frozen=True)
class DraftOrder:
    resource: dict[str, Any]

    @property
    def resource_type(self) -> str:
        return str(self.resource.get("resourceType", ""))

    @property
    def id(self) -> str | None:
        value = self.resource.get("id")
        return str(value) if value else None

    @property
    def reference(self) -> str | None:
        return f"{self.resource_type}/{self.id}" if self.id else None

    @property
    def is_medication_order(self) -> bool:
        return self.resource_type in MEDICATION_ORDER_TYPES

    @property
    def medication(self) -> dict[str, Any] | None:
        """The order's medication as a CodeableConcept, wherever the version keeps it."""
        res = self.resource
        concept = res.get("medicationCodeableConcept")
        if isinstance(concept, dict):
            return concept
        medication = res.get("medication")  # R5: CodeableReference
        if isinstance(medication, dict) and isinstance(medication.get("concept"), dict):
            return medication["concept"]
        ref = res.get("medicationReference") or (medication or {}).get("reference")
        if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("#"):
            wanted = ref["reference"][1:]
            for contained in _as_list(res.get("contained")):
                if isinstance(contained, dict) and contained.get("id") == wanted:
                    code = contained.get("code")
                    return code if isinstance(code, dict) else None
        if isinstance(ref, dict) and ref.get("display"):
            return {"text": ref["display"]}
        return None


def draft_orders(hook: str, context: dict[str, Any]) -> list[DraftOrder]:
    """The orders this call asks us to judge."""
    field = "medications" if hook == "medication-prescribe" else "draftOrders"
    raw = context.get(field)
    if raw is None:
        return []  # e.g. the sandbox re-firing a hook with only patientId and userId
    resources = _resources(raw, field)
    orders = [DraftOrder(r) for r in resources]

    if hook == "order-select" and "selections" in context:
        selections = context["selections"]
        if isinstance(selections, str):
            selections = [selections]
        if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
            raise ClientError(
                "the hook context is invalid",
                details=[
                    {
                        "field": "context.selections",
                        "problem": "must be an array of 'Type/id' strings",
                    }
                ],
            )
        wanted = {s.strip() for s in selections}
        orders = [o for o in orders if o.reference in wanted]
    return orders


def _resources(raw: Any, field: str) -> list[dict[str, Any]]:
    if isinstance(raw, dict) and raw.get("resourceType") == "Bundle":
        entries = _as_list(raw.get("entry"))
        out = []
        for entry in entries:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                out.append(resource)
        return out
    if isinstance(raw, dict) and raw.get("resourceType"):
        return [raw]
    if isinstance(raw, list):
        out = []
        for item in raw:
            if isinstance(item, dict) and item.get("resourceType") == "Bundle":
                out.extend(_resources(item, field))
            elif isinstance(item, dict) and isinstance(item.get("resource"), dict):
                out.append(item["resource"])  # an array of Bundle entries
            elif isinstance(item, dict) and item.get("resourceType"):
                out.append(item)
            else:
                raise ClientError(
                    "the hook context is invalid",
                    details=[
                        {
                            "field": f"context.{field}",
                            "problem": "array items must be FHIR resources",
                        }
                    ],
                )
        return out
    raise ClientError(
        "the hook context is invalid",
        details=[
            {
                "field": f"context.{field}",
                "problem": "must be a FHIR Bundle or an array of resources",
            }
        ],
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
