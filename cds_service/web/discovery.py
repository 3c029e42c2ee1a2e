"""The CDS services this server offers (discovery), with their prefetch templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..fhir.queries import prefetch_templates
from ..knowledge.loader import Knowledge


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str


_WHAT = (
    "Checks prescribed opioids, NSAIDs and pain adjuvants against the patient's "
    "pharmacogenomic results (CPIC guidelines) and suggests a safer alternative."
)

SERVICES: dict[str, Service] = {
    s.id: s
    for s in (
        Service(
            "pgx-order-select",
            "order-select",
            "PGx check for pain medications",
            _WHAT + " Judges the selected draft orders.",
        ),
        Service(
            "pgx-order-sign",
            "order-sign",
            "PGx check for pain medications (signing)",
            _WHAT + " Judges all draft orders at signing.",
        ),
        Service(
            "pgx-medication-prescribe",
            "medication-prescribe",
            "PGx check for pain medications (legacy medication-prescribe)",
            _WHAT + " For clients that still send the deprecated medication-prescribe hook.",
        ),
        Service(
            "pgx-patient-view",
            "patient-view",
            "PGx profile for pain care",
            "When the chart opens: which of the patient's pharmacogenomic results change the "
            "advice for opioids, NSAIDs and pain adjuvants (CPIC guidelines), in one card; the "
            "same decisions as the prescribing checks.",
        ),
    )
}


def discovery(knowledge: Knowledge, hooks: frozenset[str] | None = None) -> dict[str, Any]:
    """The discovery document; ``hooks``: only the services of these hooks (the site's)."""
    prefetch = prefetch_templates(knowledge)
    return {
        "services": [
            {
                "hook": s.hook,
                "id": s.id,
                "title": s.title,
                "description": s.description,
                "prefetch": prefetch,
            }
            for s in SERVICES.values()
            if hooks is None or s.hook in hooks
        ]
    }
