"""Build FHIR resources and hook requests for tests, in the shapes real clients send."""

from __future__ import annotations

import uuid
from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
HGNC = {
    "CYP2D6": "HGNC:2625",
    "CYP2C9": "HGNC:2623",
    "CYP2C19": "HGNC:2621",
    "HLA-A": "HGNC:4931",
    "HLA-B": "HGNC:4932",
    "RYR1": "HGNC:10483",
    "CACNA1S": "HGNC:1397",
}
TBD = "http://hl7.org/fhir/uv/genomics-reporting/CodeSystem/tbd-codes-cs"
PHENOTYPE_ANSWERS = {
    "Ultrarapid Metabolizer": ("LA10315-2", "Ultrarapid metabolizer"),
    "Normal Metabolizer": ("LA25391-6", "Normal metabolizer"),
    "Rapid Metabolizer": ("LA25390-8", "Rapid metabolizer"),
    "Intermediate Metabolizer": ("LA10317-8", "Intermediate metabolizer"),
    "Poor Metabolizer": ("LA9657-3", "Poor metabolizer"),
}
PATIENT = "pat-1"

# Product codes as the public sandbox offers them.
APAP_CODEINE = ("993781", "Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet")
TRAMADOL = ("835603", "tramadol hydrochloride 50 MG Oral Tablet")
HYDROCODONE = ("857005", "Acetaminophen 325 MG / Hydrocodone Bitartrate 7.5 MG Oral Tablet")
OXYCODONE = ("1049621", "Oxycodone Hydrochloride 5 MG Oral Tablet")
IBUPROFEN_OTC = ("197805", "Ibuprofen 400 MG Oral Tablet")


def gene_component(gene: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC, "code": "48018-6", "display": "Gene studied [ID]"}]},
        "valueCodeableConcept": {
            "coding": [
                {"system": "http://www.genenames.org/geneId", "code": HGNC[gene], "display": gene}
            ]
        },
    }


def _observation(
    obs_id: str, code: dict[str, Any], *, patient: str, status: str, date: str | None
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs_id,
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": code,
        "subject": {"reference": f"Patient/{patient}"},
    }
    if date:
        obs["effectiveDateTime"] = date
    return obs


def phenotype_obs(
    phenotype: str,
    gene: str = "CYP2D6",
    *,
    obs_id: str = "pheno-1",
    patient: str = PATIENT,
    status: str = "final",
    date: str | None = "2024-03-01",
    as_text: bool = False,
) -> dict[str, Any]:
    """STU1-style LOINC 53040-2 phenotype with a gene-studied component."""
    obs = _observation(
        obs_id,
        {"coding": [{"system": LOINC, "code": "53040-2"}]},
        patient=patient,
        status=status,
        date=date,
    )
    if as_text or phenotype not in PHENOTYPE_ANSWERS:
        obs["valueCodeableConcept"] = {"text": phenotype}
    else:
        code, display = PHENOTYPE_ANSWERS[phenotype]
        obs["valueCodeableConcept"] = {
            "coding": [{"system": LOINC, "code": code, "display": display}]
        }
    obs["component"] = [gene_component(gene)]
    return obs


def implication_obs(
    phenotype: str,
    gene: str = "CYP2D6",
    *,
    obs_id: str = "impl-1",
    patient: str = PATIENT,
    date: str | None = "2024-03-01",
    component_code: str = "therapeutic-implication",
) -> dict[str, Any]:
    """Genomics Reporting therapeutic implication with a metabolizer component."""
    code, display = PHENOTYPE_ANSWERS[phenotype]
    obs = _observation(
        obs_id,
        {"coding": [{"system": TBD, "code": "therapeutic-implication"}]},
        patient=patient,
        status="final",
        date=date,
    )
    obs["component"] = [
        {
            "code": {"coding": [{"system": TBD, "code": component_code}]},
            "valueCodeableConcept": {
                "coding": [{"system": LOINC, "code": code, "display": display}]
            },
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "51963-7"}]},
            "valueCodeableConcept": {
                "coding": [{"system": RXNORM, "code": "2670", "display": "codeine"}]
            },
        },
        gene_component(gene),
    ]
    return obs


def genotype_obs(
    diplotype: str,
    gene: str | None = "CYP2D6",
    *,
    obs_id: str = "geno-1",
    patient: str = PATIENT,
    status: str = "final",
    date: str | None = "2024-03-01",
    where: str = "text",
) -> dict[str, Any]:
    """LOINC 84413-4 genotype; ``where`` puts the diplotype in text, display or valueString."""
    obs = _observation(
        obs_id,
        {"coding": [{"system": LOINC, "code": "84413-4"}]},
        patient=patient,
        status=status,
        date=date,
    )
    if where == "text":
        obs["valueCodeableConcept"] = {"text": diplotype}
    elif where == "display":
        obs["valueCodeableConcept"] = {
            "coding": [
                {"system": "http://www.pharmvar.org", "code": diplotype, "display": diplotype}
            ]
        }
    else:
        obs["valueString"] = diplotype
    if gene:
        obs["component"] = [gene_component(gene)]
    return obs


def bundle(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


def med_order(
    code: tuple[str, str] | None,
    *,
    version: str = "R4",
    order_id: str = "order-1",
    patient: str = PATIENT,
) -> dict[str, Any]:
    """A draft medication order as R4/STU3 MedicationRequest or DSTU2 MedicationOrder,
    shaped like the public sandbox's (single-object category included)."""
    if version == "DSTU2":
        res: dict[str, Any] = {
            "resourceType": "MedicationOrder",
            "id": order_id,
            "status": "draft",
            "patient": {"reference": f"Patient/{patient}"},
            "dateWritten": "2026-11-28",
        }
    else:
        res = {
            "resourceType": "MedicationRequest",
            "id": order_id,
            "status": "draft",
            "intent": "order",
            "subject": {"reference": f"Patient/{patient}"},
            "authoredOn": "2026-11-28",
            "category": {"coding": [{"code": "outpatient"}]},
        }  # sandbox quirk: not an array
        if version == "R4":
            res["dosageInstruction"] = [
                {"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "pill"}}]}
            ]
        else:
            res["dosageInstruction"] = [{"doseQuantity": {"value": 1, "unit": "pill"}}]
    if code:
        res["medicationCodeableConcept"] = {
            "text": code[1],
            "coding": [{"system": RXNORM, "code": code[0], "display": code[1]}],
        }
    return res


def med_statement(
    code: tuple[str, str] | None,
    *,
    status: str = "active",
    statement_id: str = "stmt-1",
    patient: str = PATIENT,
    **extra: Any,
) -> dict[str, Any]:
    """An R4 MedicationStatement (a home medication, reported by the patient)."""
    res: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": statement_id,
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "dateAsserted": "2026-01-15",
        "informationSource": {"reference": f"Patient/{patient}"},
    }
    if code:
        res["medicationCodeableConcept"] = {
            "text": code[1],
            "coding": [{"system": RXNORM, "code": code[0], "display": code[1]}],
        }
    res.update(extra)
    return res


def days_ago(days: int) -> str:
    """The date ``days`` before today, as FHIR writes a date."""
    from datetime import date, timedelta

    return (date.today() - timedelta(days=days)).isoformat()


def hook_request(
    hook: str,
    orders: list[dict[str, Any]],
    *,
    prefetch: dict[str, Any] | None = None,
    fhir_server: str | None = None,
    token: str | None = None,
    as_array: bool = False,
    selections: list[str] | None = None,
    patient: str = PATIENT,
) -> dict[str, Any]:
    field = "medications" if hook == "medication-prescribe" else "draftOrders"
    payload: Any = (
        orders
        if as_array
        else {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": o} for o in orders],
        }
    )
    context: dict[str, Any] = {
        "userId": "Practitioner/example",
        "patientId": patient,
        field: payload,
    }
    if hook == "order-select":
        context["selections"] = (
            selections
            if selections is not None
            else [f"{o['resourceType']}/{o['id']}" for o in orders]
        )
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if fhir_server:
        body["fhirServer"] = fhir_server
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Observation.read",
            "subject": "pgx-cds",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def with_results(*observations: dict[str, Any]) -> dict[str, Any]:
    return {"genomicResults": bundle(*observations)}


#: The label rules' chart reads (a codeine or tramadol order asks for them), prefetched as
#: "the client has no such data": a test of other reads then sees only its own.
NO_CHART: dict[str, Any] = {
    "recentProcedures": None,
    "activeConditions": None,
    "breastfeedingStatus": None,
}


def is_results_search(url: str | None) -> bool:
    """A search for genomic results (not the breastfeeding-status search, also an
    Observation search)."""
    return "/Observation?" in (url or "") and "63895-7" not in (url or "")


def feedback_body(comment: str | None = None) -> dict[str, Any]:
    """Feedback on two cards, as an EHR sends it: one suggestion taken, one card overridden
    with a coded reason (and ``comment``, if given)."""
    reason: dict[str, Any] = {
        "reason": {"code": "no-alternative", "system": "urn:pgx-pain-cds:override-reason"}
    }
    if comment is not None:
        reason["userComment"] = comment
    return {
        "feedback": [
            {
                "card": "7f5c0ed6-0000-4000-8000-000000000001",
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "s-1"}],
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
            },
            {
                "card": "7f5c0ed6-0000-4000-8000-000000000002",
                "outcome": "overridden",
                "overrideReason": reason,
                "outcomeTimestamp": "2026-11-28T10:01:00+01:00",
            },
        ]
    }


def shown(markdown: str) -> str:
    """Card text as a Markdown client shows it: backslash escapes removed."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown)


#: A hashing key for the card log as a site makes one (``openssl rand -hex 32``): required
#: with client authentication.
HASH_KEY = "3f1c9a7be24d5086c1f7e9a2b4d6083e5a7c9e1f3b5d7092a4c6e8f0b2d4f617"


def codeine_cards(
    client: Any,
    order: str = "rx-1",
    *,
    phenotype: str = "Ultrarapid Metabolizer",
    hook: str = "order-select",
    patient: str = PATIENT,
) -> list[dict[str, Any]]:
    """The cards a Flask test client's service answers for an acetaminophen/codeine order
    (``order`` its id) of a patient with a CYP2D6 ``phenotype`` result (the answer must be
    a 200)."""
    body = hook_request(
        hook,
        [med_order(APAP_CODEINE, order_id=order, patient=patient)],
        prefetch=with_results(phenotype_obs(phenotype, patient=patient)),
        patient=patient,
    )
    answer = client.post(f"/cds-services/pgx-{hook}", json=body)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return list(answer.get_json()["cards"])
