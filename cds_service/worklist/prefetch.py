"""What the hooks' prefetch templates ask for, read for many patients at once.

The prescribing code gets each order's patient data as an EHR gives it: a prefetch filled
from the service's own templates (``fhir.queries.prefetch_templates``). The worklist fills
them itself, batched: a template searching by the patient (``Observation?patient={{…}}&…``)
becomes one search for up to ``PATIENTS_PER_SEARCH`` patients (``patient=a,b,c``), and the read
of the patient (``Patient/{{…}}``) a search by ``_id``. The answers are split by the patient
each resource is about. So a template another change adds is batched too; one of another
shape, or one whose batched search fails, is left out of the prefetch, and the prescribing
code reads it per patient itself, as it does for an EHR that did not prefetch it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..fhir.hook_context import referenced_patient
from ..fhir.values import as_dict, as_str
from .reader import MAX_QUERY, PAGE_SIZE, PATIENTS_PER_SEARCH, Reader, SearchFailed

PLACEHOLDER = "{{context.patientId}}"
#: A FHIR id: only such patients are named in a batched search (others: read per patient).
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

Batch = Callable[[list[str]], str]


def batched(template: str) -> Batch | None:
    """The search for a list of patient ids that answers ``template`` for each of them, or
    None when the template has another shape."""
    if template == f"Patient/{PLACEHOLDER}":
        return lambda ids: f"Patient?_id={','.join(ids)}&_count={PAGE_SIZE}"
    resource_type, sep, query = template.partition("?")
    if not sep or template.count(PLACEHOLDER) != 1 or not resource_type.isalpha():
        return None
    params = query.split("&")
    for i, param in enumerate(params):
        name, _, value = param.partition("=")
        if value in (PLACEHOLDER, f"Patient/{PLACEHOLDER}"):
            prefix = value[: -len(PLACEHOLDER)]

            def search(ids: list[str], i: int = i, name: str = name, prefix: str = prefix) -> str:
                listed = ",".join(prefix + x for x in ids)
                return f"{resource_type}?" + "&".join(
                    [*params[:i], f"{name}={listed}", *params[i + 1 :]]
                )

            return search
    return None


def owner(resource: dict[str, Any]) -> str | None:
    """The id of the patient a resource is about (a Patient: itself), or None."""
    if resource.get("resourceType") == "Patient":
        return as_str(resource.get("id")) or None
    for key in ("subject", "patient"):  # (DSTU2 orders: patient)
        reference = as_str(as_dict(resource.get(key)).get("reference"))
        if reference:
            return referenced_patient(reference)
    return None


def medication_reference(resource: dict[str, Any]) -> str:
    """'Medication/123' an order or statement points at (R4, or R5's CodeableReference)."""
    holder = resource.get("medicationReference") or as_dict(resource.get("medication"))
    return as_str(as_dict(holder).get("reference"))


def split(resources: list[dict[str, Any]], patients: set[str]) -> dict[str, list[dict[str, Any]]]:
    """``resources`` by the patient each is about (``patients`` only); a resource about no
    patient (a Medication sent with ``_include``) goes to each patient whose resources point
    at it."""
    mine: dict[str, list[dict[str, Any]]] = {p: [] for p in patients}
    loose: dict[str, dict[str, Any]] = {}
    for resource in resources:
        patient = owner(resource)
        if patient in mine:
            mine[patient].append(resource)
        elif patient is None and as_str(resource.get("id")):
            loose[f"{resource.get('resourceType')}/{resource['id']}"] = resource
    if loose:
        for found in mine.values():
            wanted = {medication_reference(r) for r in found} & loose.keys()
            found.extend(loose[ref] for ref in sorted(wanted))
    return mine


def as_prefetch(template: str, resources: list[dict[str, Any]]) -> Any:
    """A prefetch value as an EHR sends it: the resource for a read, a Bundle for a search."""
    if "?" not in template:
        return resources[0] if resources else None
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


def read_prefetch(
    reader: Reader,
    templates: dict[str, str],
    patients: list[str],
    known: dict[str, dict[str, list[dict[str, Any]]]] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each patient's prefetch (key -> value), read with one search per template and group of
    patients, and the keys whose search failed (left out: read per patient instead).
    ``known``: what earlier searches brought already (key -> patient -> resources, e.g.
    patients sent with ``_include``): those patients are not asked for again."""
    prefetch: dict[str, dict[str, Any]] = {p: {} for p in patients}
    failed: list[str] = []
    for key, template in templates.items():
        batch = batched(template)
        if batch is None:
            continue  # the prescribing code reads it per patient
        have = (known or {}).get(key, {})
        wanted = [p for p in patients if FHIR_ID.match(p) and p not in have]
        found: dict[str, list[dict[str, Any]]] = {p: have[p] for p in patients if p in have}
        try:
            for group in _groups(wanted, batch):
                resources = reader.search(batch(group), f"{key} of {len(group)} patients")
                found.update(split(resources, set(group)))
        except SearchFailed as exc:
            reader.progress(f"{exc}; those patients' {key} is read per patient")
            failed.append(key)
            found = {p: have[p] for p in patients if p in have}
        for patient, resources in found.items():
            value = as_prefetch(template, resources)
            if value is not None:  # (a patient not found: the prescribing code reads it)
                prefetch[patient][key] = value
    return prefetch, failed


def _groups(ids: list[str], batch: Batch) -> list[list[str]]:
    """``ids`` in groups of at most ``PATIENTS_PER_SEARCH`` whose search fits ``MAX_QUERY``."""
    groups: list[list[str]] = []
    group: list[str] = []
    for patient in ids:
        if group and (
            len(group) >= PATIENTS_PER_SEARCH or len(batch([*group, patient])) > MAX_QUERY
        ):
            groups.append(group)
            group = []
        group.append(patient)
    if group:
        groups.append(group)
    return groups
