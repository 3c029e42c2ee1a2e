"""The FHIR reads a hook call may need, written once: the prefetch templates the service asks
the EHR for and the queries it sends itself when they were not prefetched are the same."""

from __future__ import annotations

from ..knowledge.loader import Knowledge
from .patient_data import ACTIVE_MEDICATIONS, GENOMIC_RESULTS, PATIENT


def genomic_query(knowledge: Knowledge, patient: str) -> str:
    """The FHIR search for the patient's genomic results; prefetch and fetch share it."""
    codes = ",".join(sorted(knowledge.result_codes.codes))
    return f"Observation?patient={patient}&code={codes}&_count=100"


def patient_query(patient: str) -> str:
    """The read of the patient (for the age rules); prefetch and fetch share it."""
    return f"Patient/{patient}"


def active_medications_query(patient: str) -> str:
    """The search for the patient's active orders (CYP2D6 inhibitors); prefetch and fetch
    share it."""
    return f"MedicationRequest?patient={patient}&status=active"


def prefetch_templates(knowledge: Knowledge) -> dict[str, str]:
    patient = "{{context.patientId}}"
    return {
        PATIENT: patient_query(patient),
        GENOMIC_RESULTS: genomic_query(knowledge, patient),
        ACTIVE_MEDICATIONS: active_medications_query(patient),
    }
