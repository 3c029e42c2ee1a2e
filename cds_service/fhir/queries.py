"""The FHIR reads a hook call may need, written once: the prefetch templates the service asks
the EHR for and the queries it sends itself when they were not prefetched are the same."""

from __future__ import annotations

from ..knowledge.loader import Knowledge
from .patient_data import ACTIVE_MEDICATIONS, GENOMIC_RESULTS, MEDICATION_STATEMENTS, PATIENT


def genomic_query(knowledge: Knowledge, patient: str) -> str:
    """The FHIR search for the patient's genomic results; prefetch and fetch share it."""
    codes = ",".join(sorted(knowledge.result_codes.codes))
    return f"Observation?patient={patient}&code={codes}&_count=100"


def patient_query(patient: str) -> str:
    """The read of the patient (for the age rules); prefetch and fetch share it."""
    return f"Patient/{patient}"


def active_medications_query(patient: str) -> str:
    """The search for the patient's orders in force (CYP2D6 inhibitors, continuing therapy):
    active, and on hold (to be resumed); prefetch and fetch share it. The Medications they
    reference come along (``_include``; a server that does not know it ignores it)."""
    return (
        f"MedicationRequest?patient={patient}&status=active,on-hold"
        "&_include=MedicationRequest:medication"
    )


#: MedicationStatement statuses asked for: taken now or soon (active, intended, on-hold),
#: over but perhaps still acting (stopped, completed: a long-lived inhibitor's effect outlasts
#: it) and unknown. Not asked for: entered-in-error and not-taken (never counted).
STATEMENT_STATUSES = "active,intended,on-hold,stopped,completed,unknown"


def medication_statements_query(patient: str) -> str:
    """The search for the patient's medication list (home medications, drugs from outside
    prescribers, patient-reported: CYP2D6 inhibitors, continuing therapy); prefetch and fetch
    share it."""
    return (
        f"MedicationStatement?patient={patient}&status={STATEMENT_STATUSES}"
        "&_include=MedicationStatement:medication"
    )


def prefetch_templates(knowledge: Knowledge) -> dict[str, str]:
    patient = "{{context.patientId}}"
    return {
        PATIENT: patient_query(patient),
        GENOMIC_RESULTS: genomic_query(knowledge, patient),
        ACTIVE_MEDICATIONS: active_medications_query(patient),
        MEDICATION_STATEMENTS: medication_statements_query(patient),
    }
