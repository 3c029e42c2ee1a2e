"""The FHIR reads a hook call may need, written once: the prefetch templates the service asks
the EHR for and the queries it sends itself when they were not prefetched are the same."""

from __future__ import annotations

from ..knowledge.loader import Knowledge
from .patient_data import (
    ACTIVE_CONDITIONS,
    ACTIVE_MEDICATIONS,
    BREASTFEEDING_STATUS,
    GENOMIC_RESULTS,
    MEDICATION_STATEMENTS,
    PATIENT,
    RECENT_PROCEDURES,
)


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


#: The label rules' chart reads: newest first and a page at most (CDS Hooks 2.0.1 prefetch
#: tokens cannot name a date relative to the call, so the service applies each finding's date
#: window, e.g. procedures of the last 30 days, to what the read returns).
MAX_PROCEDURES = 50
MAX_CONDITIONS = 100
MAX_STATUS_OBSERVATIONS = 10


def procedures_query(patient: str) -> str:
    """The patient's latest Procedures (a recent tonsillectomy or adenoidectomy)."""
    return f"Procedure?patient={patient}&_sort=-date&_count={MAX_PROCEDURES}"


def conditions_query(patient: str) -> str:
    """The patient's current Conditions (obesity, sleep apnoea, lung disease, lactation)."""
    return (
        f"Condition?patient={patient}&clinical-status=active,recurrence,relapse"
        f"&_count={MAX_CONDITIONS}"
    )


def status_observations_query(knowledge: Knowledge, patient: str) -> str:
    """The patient's latest status Observations the label rules read (breastfeeding status,
    LOINC 63895-7), by the codes ``label_rules.json`` gives them (canonical system URIs)."""
    rules = knowledge.label_rule_file
    codes = sorted(
        f"{rules.systems[s.system].uris[0]}|{code}"
        for finding in rules.findings.values()
        if finding.observation is not None
        for s in finding.observation.codes
        for code in s.codes
    )
    return (
        f"Observation?patient={patient}&code={','.join(codes)}&_sort=-date"
        f"&_count={MAX_STATUS_OBSERVATIONS}"
    )


def chart_reads(knowledge: Knowledge, patient: str) -> dict[str, tuple[str, str]]:
    """Per chart source of the label rules' findings (``Finding.chart``): its prefetch key
    and its query."""
    return {
        "procedures": (RECENT_PROCEDURES, procedures_query(patient)),
        "conditions": (ACTIVE_CONDITIONS, conditions_query(patient)),
        "observations": (BREASTFEEDING_STATUS, status_observations_query(knowledge, patient)),
    }


def prefetch_templates(knowledge: Knowledge) -> dict[str, str]:
    patient = "{{context.patientId}}"
    return {
        PATIENT: patient_query(patient),
        GENOMIC_RESULTS: genomic_query(knowledge, patient),
        ACTIVE_MEDICATIONS: active_medications_query(patient),
        MEDICATION_STATEMENTS: medication_statements_query(patient),
        **{key: query for key, query in chart_reads(knowledge, patient).values()},
    }


def prefetch_text(knowledge: Knowledge) -> str:
    """The prefetch templates as an EHR analyst enters them by hand (Epic reads no discovery
    document): each key and its query, word for word (``pgx-cds knowledge prefetch``)."""
    return "\n".join(
        f"Prefetch Property Name: {key}\nFHIR Query: {query}\n"
        for key, query in prefetch_templates(knowledge).items()
    )
