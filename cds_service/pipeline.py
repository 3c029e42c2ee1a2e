"""One hook call, end to end.

context -> medications -> genomic facts -> recommendations -> cards
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from . import cards, genomic_facts, hook_context, medications, patient_data, recommendations
from .errors import ClientError
from .knowledge import Knowledge
from .request import HookRequest
from .services import genomic_query
from .settings import Settings
from .trace import Trace


@dataclass
class Engine:
    """What every call shares: the knowledge, the settings and pooled HTTP connections."""

    knowledge: Knowledge
    settings: Settings
    session: requests.Session = field(default_factory=requests.Session)

    def evaluate(
        self, request: HookRequest, *, read_results: bool = False
    ) -> tuple[dict[str, Any], Trace]:
        """Cards for one hook call, and the trace of how they were decided.

        Genomic results are read only when a covered drug is ordered, unless
        ``read_results`` (``pgx-cds explain`` shows them in any case).
        """
        trace = Trace()
        orders = hook_context.draft_orders(request.hook, request.context)
        if len(orders) > MAX_ORDERS:  # bounded work per call (no real order session nears it)
            raise ClientError(
                f"too many draft orders: this service judges at most {MAX_ORDERS} per call",
                details=[{"field": "context", "problem": f"more than {MAX_ORDERS} draft orders"}],
            )
        trace.add("context", f"{len(orders)} order(s) to judge")
        client = self._client(request)
        with_medication = self._medication_reader(client, trace)
        orders = [with_medication(o) for o in orders]
        drugs: list[medications.IdentifiedDrug] = []
        for order in orders:
            name = order.reference or order.resource_type or "order"
            if not order.is_medication_order:
                trace.add("medications", f"{name}: not a medication order")
                continue
            found, how = medications.identify(order, self.knowledge)
            trace.add("medications", f"{name}: {how}")
            drugs.extend(d for d in found if d.drug in self.knowledge.covered_drugs)
        if not drugs:
            trace.add("medications", "no drug with a pharmacogenomic recommendation: no cards")
            if not read_results:
                return {"cards": []}, trace

        query = genomic_query(self.knowledge, quote(request.patient_id, safe=""))
        resources = patient_data.genomic_results(request, query, client, trace)
        facts = genomic_facts.summarise(
            resources,
            request.patient_id,
            self.knowledge,
            trace,
            _resolver(client, trace),
            fhir_base=request.fhirServer,
        )
        matched = recommendations.match(drugs, facts, self.knowledge, trace)
        return {"cards": cards.build_cards(matched, self.knowledge)}, trace

    def _client(self, request: HookRequest) -> patient_data.FhirClient | None:
        if not request.fhirServer:
            return None
        if not self.settings.fhir_server_allowed(request.fhirServer):
            raise ClientError(
                "the request's fhirServer is not one this service may query (PGX_CDS_FHIR_SERVERS)",
                status=403,
            )
        return patient_data.FhirClient(
            request.fhirServer,
            request.access_token,
            timeout=self.settings.fhir_timeout,
            max_pages=self.settings.fhir_max_pages,
            session=self.session,
            budget=self.settings.fhir_budget,
            max_bytes=self.settings.fhir_max_bytes,
        )

    @staticmethod
    def _medication_reader(
        client: patient_data.FhirClient | None, trace: Trace
    ) -> Callable[[hook_context.DraftOrder], hook_context.DraftOrder]:
        """Reads the Medication an order references when the client did not send it: on the
        request's FHIR server only, each at most once, a few per call."""
        read: dict[str, dict[str, Any] | None] = {}

        def with_medication(order: hook_context.DraftOrder) -> hook_context.DraftOrder:
            ref = order.medication_reference or ""
            if client is not None and ref.startswith(client.base_url):
                ref = ref[len(client.base_url) :]  # absolute reference on this server
            if (
                client is None
                or not order.is_medication_order
                or order.coded_medication is not None
                or not ref.startswith("Medication/")
            ):
                return order
            if ref not in read and len(read) < MAX_REFERENCE_READS:
                try:
                    read[ref] = client.read(ref)
                    trace.add(
                        "medications", f"read {ref} (referenced by {order.reference or 'an order'})"
                    )
                except patient_data.FhirUnavailable as exc:
                    trace.add("medications", f"could not read {ref}: {exc}")
                    read[ref] = None
            found = read.get(ref)
            return order.with_medication(found, ref) if found else order

        return with_medication


MAX_REFERENCE_READS = 5
MAX_ORDERS = 100


def _resolver(
    client: patient_data.FhirClient | None, trace: Trace
) -> Callable[[str], dict[str, Any] | None] | None:
    """Reads referenced Observations (``derivedFrom``) the search did not return, a few at most."""
    if client is None:
        return None
    reads: dict[str, dict[str, Any] | None] = {}

    def resolve(reference: str) -> dict[str, Any] | None:
        if reference in reads:
            return reads[reference]
        if len(reads) >= MAX_REFERENCE_READS or not reference.startswith("Observation/"):
            return None
        try:
            reads[reference] = client.read(reference)
            trace.add("fetch", f"read {reference} (referenced by a result)")
        except patient_data.FhirUnavailable as exc:
            trace.add("fetch", f"could not read {reference}: {exc}")
            reads[reference] = None
        return reads[reference]

    return resolve
