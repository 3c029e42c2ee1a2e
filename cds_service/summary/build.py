"""The patient's summary: what the patient-view card decides, as a record for the patient.

Nothing here decides anything: ``summarise`` runs the pipeline's own patient-view call
(``Engine.patient_view``) and keeps what its card was built from (``patient_view.Decided``):
the results per gene, the drugs whose advice changes (and the advice the prescribing card
gives), the label and pre-test rules, and the drugs the site keeps silent. The page, the
wallet card and the SMART Health Card are all written from this one ``Summary``.

The Patient (name and birth date, for the page and the card) is read once and handed to the
pipeline as prefetch, so it is read only once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ..clinical.patient_view import Decided
from ..clinical.severity import LEVELS
from ..core.hook_request import parse_hook_request
from ..fhir import patient_data
from ..fhir.values import as_dict, as_str, objects
from ..genomics.gene_decision import GeneResult
from ..knowledge.loader import Knowledge
from ..pipeline import Engine

HOOK = "patient-view"


@dataclass(frozen=True)
class Reading:
    """One of the results of a gene whose results disagree, as reported."""

    kind: str  # "genotype", "phenotype", ...
    value: str  # what the lab reported: "*1/*1", "Poor metabolizer"
    phenotype: str  # today's reading of it
    date: str | None = None
    lab: str | None = None


@dataclass(frozen=True)
class GeneLine:
    """One gene's result as the patient-view card reads it."""

    gene: str
    #: the phenotype of the result on file (its genotype's, where it has one)
    phenotype: str
    diplotype: str | None = None
    activity_score: str | None = None
    date: str | None = None
    lab: str | None = None
    #: the phenotype that acts while the patient takes ``converted_by`` (phenoconversion)
    acting: str | None = None
    converted_by: tuple[str, ...] = ()
    discordant: bool = False
    usable: bool = True
    #: the results that disagree (each as reported), when they do: all are shown and carried
    readings: tuple[Reading, ...] = ()


@dataclass(frozen=True)
class DrugLine:
    """A drug whose prescribing card changes the usual advice, as that card gives it."""

    drug: str
    genes: tuple[str, ...]
    level: str
    action: str
    #: the results leave the row open: the most severe reading's advice is followed
    unclear: bool
    advice: str
    recommendation: str
    guideline: str | None = None
    url: str | None = None
    strength: str | None = None
    table: str | None = None


@dataclass(frozen=True)
class RuleLine:
    """A label rule or pre-test card for the patient (whatever the genotype)."""

    drug: str
    level: str
    summary: str
    source: str
    url: str
    #: a test to order first (a pre-test card), not a rule about the patient
    pretest: bool = False


@dataclass(frozen=True)
class Summary:
    patient_id: str
    name: str | None
    birth_date: str | None
    genes: list[GeneLine]
    drugs: list[DrugLine]
    unchanged: list[str]
    rules: list[RuleLine]
    silent: list[str]
    knowledge_version: str
    made_on: str
    #: the patient-view card's one-line summary (None: the service gives no card)
    card_summary: str | None = None
    links: list[dict[str, str]] = field(default_factory=list)


def summarise(
    engine: Engine, fhir_server: str, token: str | None, patient_id: str
) -> tuple[Summary, Any]:
    """The summary of ``patient_id`` on ``fhir_server`` (read with ``token``), from the
    pipeline's patient-view call; and its trace. Raises ``ClientError`` for a server the
    service may not read, ``patient_data.FhirUnavailable`` when the Patient cannot be read."""
    body: dict[str, Any] = {
        "hook": HOOK,
        "hookInstance": "patient-summary",
        "fhirServer": fhir_server,
        "context": {"patientId": patient_id},
    }
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer"}
    request = parse_hook_request(body, HOOK)
    engine.check_fhir_server(request)
    patient = read_patient(engine, request)
    request.prefetch = {patient_data.PATIENT: patient}
    seen: list[Decided] = []
    answer, trace = engine.patient_view(request, decided=seen.append)
    card = (answer.get("cards") or [None])[0]
    return from_decided(
        seen[0] if seen else None, card, patient, patient_id, engine.knowledge
    ), trace


def read_patient(engine: Engine, request: Any) -> dict[str, Any]:
    """The Patient in context, read from the request's FHIR server with its token."""
    client = patient_data.FhirClient(
        request.fhirServer,
        request.access_token,
        timeout=engine.settings.fhir_timeout,
        max_pages=1,
        session=engine.session,
        budget=engine.settings.fhir_budget,
        max_bytes=engine.settings.fhir_max_bytes,
    )
    try:
        return client.read(f"Patient/{quote(request.patient_id, safe='')}")
    finally:
        client.close()


def from_decided(
    decided: Decided | None,
    card: dict[str, Any] | None,
    patient: dict[str, Any] | None,
    patient_id: str,
    knowledge: Knowledge,
    today: datetime | None = None,
) -> Summary:
    """The ``Summary`` from what the patient-view card was built from (None: no card was
    built, e.g. no usable result) and the Patient resource."""
    name, birth = patient_name(patient), as_str(as_dict(patient).get("birthDate")) or None
    made_on = (today or datetime.now(UTC)).date().isoformat()
    if decided is None:
        return Summary(patient_id, name, birth, [], [], [], [], [], knowledge.version, made_on)
    genes = [_gene_line(decided.facts[g], decided.acting.get(g)) for g in sorted(decided.facts)]
    shown = decided.shown
    affected = [a for a in shown.advice.values() if a.affected]
    affected.sort(key=lambda a: (-LEVELS[a.level], a.drug))
    drugs = []
    for a in affected:
        rec = a.match.recommendation
        assert a.level is not None
        drugs.append(
            DrugLine(
                drug=a.drug,
                genes=tuple(dict.fromkeys(a.genes)),
                level=a.level,
                action=rec.action,
                unclear=bool(a.match.possible),
                advice=a.advice,
                recommendation=rec.recommendation,
                guideline=rec.guideline.name if rec.guideline else None,
                url=rec.guideline.url if rec.guideline else None,
                strength=rec.strength,
                table=rec.table,
            )
        )
    ruled = {n.drug.drug for n in shown.notices}
    unchanged = sorted(d for d, a in shown.advice.items() if not a.affected and d not in ruled)
    rules = [
        RuleLine(
            n.drug.drug,
            n.indicator,
            n.summary,
            n.source.title,
            n.source.url,
            pretest=n.test is not None and n.result is None,
        )
        for n in sorted(shown.notices, key=lambda n: (-LEVELS[n.indicator], n.drug.drug))
    ]
    return Summary(
        patient_id,
        name,
        birth,
        genes,
        drugs,
        unchanged,
        rules,
        list(shown.silent),
        knowledge.version,
        made_on,
        card_summary=(card or {}).get("summary"),
        links=list((card or {}).get("links") or []),
    )


def _gene_line(fact: GeneResult, acting: GeneResult | None) -> GeneLine:
    converted = acting is not None and acting.genetic_phenotype and acting.phenoconverted_by
    return GeneLine(
        gene=fact.gene,
        phenotype=fact.phenotype,
        diplotype=fact.diplotype,
        activity_score=fact.activity_score_text,
        date=fact.date_text,
        lab=fact.performer,
        acting=acting.phenotype if converted and acting is not None else None,
        converted_by=acting.phenoconverted_by if converted and acting is not None else (),
        discordant=fact.discordant,
        usable=fact.actionable,
        readings=tuple(
            Reading(r.kind, r.value, r.phenotype, r.date_text, r.performer)
            for r in fact.disagreeing
        ),
    )


def patient_name(patient: dict[str, Any] | None) -> str | None:
    """The patient's name as written: the official (else the first) name's text, or its
    given names and family name."""
    names = objects(as_dict(patient).get("name"))
    if not names:
        return None
    name = next((n for n in names if as_str(n.get("use")) == "official"), names[0])
    if as_str(name.get("text")).strip():
        return as_str(name.get("text")).strip()
    given = [as_str(g) for g in name.get("given") or [] if isinstance(g, str)]
    words = [*given, as_str(name.get("family"))]
    return " ".join(w.strip() for w in words if w.strip()) or None
