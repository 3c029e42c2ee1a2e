"""Which orders the worklist judges: active and on-hold orders and medication statements for
the drugs the knowledge covers, found by code on the FHIR server.

* By code: ``MedicationRequest`` and ``MedicationStatement`` searched with the RxNorm codes of
  every product that contains a covered drug (``knowledge/rxnorm_products.json``), in as
  few searches as keep each URL short, ``status=active,on-hold``. The codes are given
  without a system: servers match them under any of the RxNorm system URIs EHRs use, and a
  local code that happens to be equal only brings an order the prescribing code then does not
  identify. Orders whose medication is a ``Medication`` resource are found through it:
  ``Medication?code=…``, then the orders that reference those.
* Not by text: FHIR's ``:text`` search is optional and servers match it differently (one
  that ignores it would return every active order); an order coded only with a local code
  is not found (the hooks, which read the order's text, still judge it when it is signed).
* ``since``: the orders written since (``_lastUpdated``), and the active orders of every
  patient with a genomic result recorded since (searched with the hooks' genomic-results
  template, by ``_lastUpdated`` instead of patient).

Site policy: drugs switched ``off`` are not searched for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..fhir.patient_data import GENOMIC_RESULTS
from ..fhir.queries import prefetch_templates
from ..fhir.values import as_str
from ..governance.site_config import SiteConfig
from ..knowledge.loader import Knowledge
from .prefetch import FHIR_ID, PLACEHOLDER, owner
from .reader import PAGE_SIZE, Capabilities, Reader, SearchFailed, joined

ORDER_TYPES = ("MedicationRequest", "MedicationStatement")
#: The statuses of an order (and a statement) the patient is on, or will be again.
STATUSES = ("active", "on-hold")


@dataclass
class Found:
    """The orders to judge and what came with them."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Type/id" -> resource
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Medication/id"
    patients: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> Patient
    problems: list[str] = field(default_factory=list)  # searches that failed: incomplete

    def add(self, resources: list[dict[str, Any]], order_type: str) -> None:
        for resource in resources:
            kind, rid = as_str(resource.get("resourceType")), as_str(resource.get("id"))
            if not rid:
                continue
            if kind == order_type and _status(resource) in STATUSES:
                self.orders[f"{kind}/{rid}"] = resource
            elif kind == "Medication":
                self.medications[f"Medication/{rid}"] = resource
            elif kind == "Patient":
                self.patients[rid] = resource


def _status(resource: dict[str, Any]) -> str:
    return as_str(resource.get("status")).strip().lower()


def covered_codes(knowledge: Knowledge, site: SiteConfig) -> list[str]:
    """The RxNorm codes of every product containing a covered drug not switched off."""
    drugs = {d for d in knowledge.covered_drugs if site.drug_mode(d) != "off"}
    return sorted((c for c, found in knowledge.products.items() if found & drugs), key=int)


def find_orders(
    reader: Reader,
    capabilities: Capabilities,
    knowledge: Knowledge,
    site: SiteConfig,
    since: str | None,
) -> Found:
    """Every order to judge (``since``: those written since, and those of the patients with
    a result since). A search that fails is named in ``problems``; the others go on."""
    found = Found()
    codes = covered_codes(knowledge, site)
    changed = f"&_lastUpdated=ge{quote(since)}" if since else ""
    types = [t for t in ORDER_TYPES if capabilities.searchable(t)]
    for skipped in sorted(set(ORDER_TYPES) - set(types)):
        reader.progress(f"the server does not offer {skipped} search: not read")
    for order_type in types:
        include = capabilities.include(order_type, f"{order_type}:subject", f"{order_type}:patient")
        suffix = _suffix(order_type, changed, include)
        _each(reader, found, order_type, joined(f"{order_type}?", "code", codes, suffix), "by code")
    if capabilities.searchable("Medication"):
        _by_medication(reader, found, types, codes, changed)
    if since:
        _of_new_results(reader, capabilities, found, types, knowledge, since)
    return found


def _suffix(order_type: str, changed: str, include: str | None) -> str:
    more = f"&_include={include}" if include else ""
    return f"&status={','.join(STATUSES)}&_count={PAGE_SIZE}{changed}{more}"


def _each(reader: Reader, found: Found, order_type: str, queries: list[str], how: str) -> None:
    what = f"{order_type} {how}"
    before = len(found.orders)
    for number, query in enumerate(queries, 1):
        try:
            found.add(reader.search(query, f"{what} ({number}/{len(queries)})"), order_type)
        except SearchFailed as exc:
            found.problems.append(str(exc))
    reader.progress(f"{what}: {len(found.orders) - before} found in {len(queries)} search(es)")


def _by_medication(
    reader: Reader, found: Found, types: list[str], codes: list[str], changed: str
) -> None:
    """Orders whose medication is a Medication resource with a covered code."""
    references: set[str] = set()
    queries = joined("Medication?", "code", codes, f"&_count={PAGE_SIZE}")
    for number, query in enumerate(queries, 1):
        try:
            resources = reader.search(query, f"Medication by code ({number}/{len(queries)})")
        except SearchFailed as exc:
            found.problems.append(str(exc))
            continue
        for resource in resources:
            rid = as_str(resource.get("id"))
            if resource.get("resourceType") == "Medication" and FHIR_ID.match(rid):
                found.medications[f"Medication/{rid}"] = resource
                references.add(f"Medication/{rid}")
    if not references:
        return
    for order_type in types:
        suffix = _suffix(order_type, changed, None)
        queries = joined(f"{order_type}?", "medication", sorted(references), suffix)
        _each(reader, found, order_type, queries, "by Medication")


def _of_new_results(
    reader: Reader,
    capabilities: Capabilities,
    found: Found,
    types: list[str],
    knowledge: Knowledge,
    since: str,
) -> None:
    """The active orders of each patient with a genomic result recorded since ``since``."""
    template = prefetch_templates(knowledge)[GENOMIC_RESULTS]
    resource_type, _, query = template.partition("?")
    params = [p for p in query.split("&") if PLACEHOLDER not in p and not p.startswith("_count=")]
    search = f"{resource_type}?" + "&".join(
        [*params, f"_lastUpdated=ge{quote(since)}", f"_count={PAGE_SIZE}"]
    )
    try:
        results = reader.search(search, "results recorded since")
    except SearchFailed as exc:
        found.problems.append(str(exc))
        return
    patients = sorted({p for r in results if (p := owner(r)) and FHIR_ID.match(p)})
    reader.progress(f"{len(patients)} patients with a result recorded since {since}")
    for order_type in types:
        include = capabilities.include(order_type, f"{order_type}:medication")
        more = f"&status={','.join(STATUSES)}&_count={PAGE_SIZE}"
        more += f"&_include={include}" if include else ""
        _each(
            reader,
            found,
            order_type,
            joined(f"{order_type}?", "patient", patients, more),
            "of those patients",
        )
