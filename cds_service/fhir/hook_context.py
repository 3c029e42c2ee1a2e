"""Draft orders out of a hook context, whatever shape the client sends.

Handles ``order-select`` / ``order-sign`` (``draftOrders``, ``selections``) and the legacy
``medication-prescribe`` (``medications``); R4 and STU3 ``MedicationRequest``, DSTU2
``MedicationOrder``; a Bundle, an array of resources, or a lone resource (the public
sandbox sends some arrays as single objects).

A medication order whose status says it is over or was never real (entered-in-error,
cancelled, stopped, completed, R5's ended), or whose subject (DSTU2: patient) is another
patient than ``context.patientId``, is not judged (``judged``). Orders without a status or
a subject are judged: the sandbox sends some.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..core.errors import ClientError
from ..core.trace import Trace

MEDICATION_ORDER_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})

#: Statuses of an order that is over or was never real: R4 and STU3 MedicationRequest
#: (cancelled, completed, entered-in-error, stopped), DSTU2 MedicationOrder (completed,
#: entered-in-error, stopped), R5 (also ended). Not here, and judged: draft, active, on-hold
#: (to be resumed) and unknown.
NOT_JUDGED_STATUSES = frozenset({"cancelled", "completed", "entered-in-error", "stopped", "ended"})


@dataclass(frozen=True)
class DraftOrder:
    """A draft order and the Medication resources that came with it. What it says of itself
    (its reference, its medication) is worked out once: a call asks dozens of times, and
    neither the resource nor ``medications`` changes once the order is made."""

    resource: dict[str, Any]
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Medication/id" -> it

    @cached_property
    def resource_type(self) -> str:
        return str(self.resource.get("resourceType", ""))

    @cached_property
    def id(self) -> str | None:
        value = self.resource.get("id")
        return str(value) if value else None

    @cached_property
    def reference(self) -> str | None:
        return f"{self.resource_type}/{self.id}" if self.id else None

    @cached_property
    def is_medication_order(self) -> bool:
        return self.resource_type in MEDICATION_ORDER_TYPES

    @cached_property
    def medication_reference(self) -> str | None:
        """'Medication/123' when the order points at a separate Medication resource."""
        res = self.resource
        ref = res.get("medicationReference")
        medication = res.get("medication")
        if ref is None and isinstance(medication, dict):
            ref = medication.get("reference")  # R5 CodeableReference
        value = ref.get("reference") if isinstance(ref, dict) else None
        return value if isinstance(value, str) and value else None

    @cached_property
    def medication(self) -> dict[str, Any] | None:
        """The order's medication as a CodeableConcept: its coded form wherever the version
        keeps it, else the reference's display text."""
        coded = self.coded_medication
        if coded is not None:
            return coded
        ref_obj = self.resource.get("medicationReference")
        medication = self.resource.get("medication")
        if ref_obj is None and isinstance(medication, dict):
            ref_obj = medication.get("reference")  # R5 CodeableReference
        if isinstance(ref_obj, dict) and isinstance(ref_obj.get("display"), str):
            return {"text": ref_obj["display"]} if ref_obj["display"] else None
        return None

    @cached_property
    def coded_medication(self) -> dict[str, Any] | None:
        """Inline, R5 CodeableReference, a contained Medication, or a Medication resource
        sent beside the order or read for it (``medications``)."""
        res = self.resource
        concept = res.get("medicationCodeableConcept")
        if isinstance(concept, dict):
            return concept
        medication = res.get("medication")
        if isinstance(medication, dict) and isinstance(concept := medication.get("concept"), dict):
            return concept
        ref = self.medication_reference
        if ref and ref.startswith("#"):
            for contained in _as_list(res.get("contained")):
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    code = contained.get("code")
                    return code if isinstance(code, dict) else None
        if ref and ref in self.medications:
            code = self.medications[ref].get("code")
            return code if isinstance(code, dict) else None
        return None

    def with_medication(self, medication: dict[str, Any], ref: str) -> DraftOrder:
        """This order, knowing the Medication resource (``ref``) it references."""
        own = self.medication_reference
        found = {ref: medication, **({own: medication} if own else {})}
        return DraftOrder(self.resource, {**self.medications, **found})


def session_orders(hook: str, context: dict[str, Any]) -> list[DraftOrder]:
    """The draft orders of this ordering session."""
    field_name = "medications" if hook == "medication-prescribe" else "draftOrders"
    raw = context.get(field_name)
    if raw is None:
        return []  # e.g. the sandbox re-firing a hook with only patientId and userId
    resources = _resources(raw, field_name)
    # Medication resources sent beside the orders, for orders that reference them
    medications = {
        f"Medication/{r['id']}": r
        for r in resources
        if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)
    }
    return [DraftOrder(r, medications) for r in resources if r.get("resourceType") != "Medication"]


def selected(hook: str, context: dict[str, Any], orders: list[DraftOrder]) -> list[DraftOrder]:
    """Of the session's ``orders``, those to judge: at order-select, the selected ones."""
    if hook != "order-select" or "selections" not in context:
        return orders
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
    return [o for o in orders if o.reference in wanted]


def judged(orders: list[DraftOrder], patient_id: str, trace: Trace) -> list[DraftOrder]:
    """Of the session's ``orders``, those that may be judged (and read for interactions) for
    the patient in context; the trace says why each other medication order is left out."""
    out = []
    for order in orders:
        why = not_judged(order, patient_id)
        if why is None:
            out.append(order)
        else:
            name = order.reference or order.resource_type
            trace.add("context", f"{name} not judged: {why}")
    return out


def not_judged(order: DraftOrder, patient_id: str) -> str | None:
    """Why a medication order must not be judged for patient ``patient_id``, or None."""
    if not order.is_medication_order:
        return None
    status = order.resource.get("status")
    if isinstance(status, str) and status.strip().lower() in NOT_JUDGED_STATUSES:
        return f"status '{status.strip().lower()}': not an order to be signed"
    for key in ("subject", "patient"):  # R4/STU3 subject, DSTU2 patient
        holder = order.resource.get(key)
        ref = holder.get("reference") if isinstance(holder, dict) else None
        named = referenced_patient(ref) if isinstance(ref, str) else None
        if named is not None and named != patient_id.strip():
            return f"its {key} is not the patient in context"
    return None


_PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([^/?#]+)$")


def referenced_patient(reference: str) -> str | None:
    """The patient id a reference names, relative ('Patient/p1') or absolute
    ('https://ehr/fhir/Patient/p1', with or without '/_history/2'); None for any other
    reference (a Group, a contained or urn:uuid one), which says nothing either way."""
    found = _PATIENT_REFERENCE.search(reference.strip().split("/_history/")[0])
    return found.group(1) if found else None


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
