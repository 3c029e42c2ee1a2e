"""Each order judged by the prescribing code itself, and the worklist's rows from its cards.

For every active order the worklist builds the hook request an EHR would send when the order
is signed (``order-sign``: the order as the draft order, the Medication it references beside
it, and the prefetch the service's templates ask for, read in batches) and hands it to
``pipeline.Engine.evaluate``: the same identification, results, phenoconversion, dose, age and
label rules, cards and site policy as a hook call, with no rule of its own. A card that call
would return as ``warning`` or ``critical`` is a row of the worklist.

The hook is ``order-sign``, unless the site's policy has it silent or off, then
``order-select``, then ``medication-prescribe``; with all three silent or off nothing is
listed (a silent drug or card is never shown to anyone, the worklist included). A
``MedicationStatement`` is judged as the order it stands for: the same resource as a
``MedicationRequest`` (``dosage`` as ``dosageInstruction``, its date as ``authoredOn``); its row
names the statement.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..clinical.medications import identify, medication_text
from ..core.hook_request import parse_hook_request
from ..core.trace import Trace
from ..fhir.hook_context import DraftOrder
from ..fhir.patient_data import GENOMIC_RESULTS
from ..fhir.values import as_dict, as_str, parse_date
from ..genomics import genomic_facts
from ..genomics.gene_decision import GeneResult
from ..governance.site_config import SiteConfig
from ..pipeline import Engine

#: The prescribing hooks, in the order the worklist takes the first the site has on.
HOOKS = ("order-sign", "order-select", "medication-prescribe")
LISTED = ("critical", "warning")
#: What a statement has that an order has not (the rest is carried over as it is).
_STATEMENT_ONLY = (
    "effectiveDateTime",
    "effectivePeriod",
    "dateAsserted",
    "informationSource",
    "derivedFrom",
    "partOf",
    "dosage",
)
_OBSERVATION = re.compile(r"Observation/([A-Za-z0-9\-.]{1,64})")


def hook_for(site: SiteConfig) -> str | None:
    """The prescribing hook whose cards the worklist lists (None: all silent or off)."""
    return next((h for h in HOOKS if site.hook_mode(h) == "on"), None)


@dataclass(frozen=True)
class Row:
    """One card on one order: what the pharmacist works through."""

    indicator: str
    patient: str  # "Patient/<id>": the pharmacist's reference (never logged)
    order: str  # "MedicationRequest/<id>" or "MedicationStatement/<id>"
    status: str
    order_date: str
    medication: str  # what was ordered, as the order names it
    drug: str
    genes: str
    summary: str
    advice: str
    detail: str  # the card's whole text (Markdown)
    result_date: str  # the date of the result the card rests on (as the card gives it)
    result_issued: str
    recommendation: str  # the card's topic: a recommendation or label rule id
    changed_since: str  # the latest of the order's date and the result's issue date


def order_date(resource: dict[str, Any]) -> str:
    """When the order was written (the statement asserted), as written."""
    period = as_dict(resource.get("effectivePeriod"))
    for value in (
        resource.get("authoredOn"),
        resource.get("dateWritten"),  # DSTU2 MedicationOrder
        resource.get("dateAsserted"),
        resource.get("effectiveDateTime"),
        period.get("start"),
    ):
        if as_str(value):
            return as_str(value)
    return ""


def as_order(resource: dict[str, Any]) -> dict[str, Any]:
    """The order a resource stands for: an order as it is; a MedicationStatement as the
    MedicationRequest for the same medication, dose, patient and reasons."""
    if resource.get("resourceType") != "MedicationStatement":
        return resource
    order = {k: v for k, v in resource.items() if k not in _STATEMENT_ONLY}
    order.update(resourceType="MedicationRequest", intent="order")
    if "dosage" in resource:
        order["dosageInstruction"] = resource["dosage"]
    written = order_date(resource)
    if written:
        order["authoredOn"] = written
    return order


def hook_body(
    hook: str,
    fhir_server: str,
    token: str | None,
    patient: str,
    order: dict[str, Any],
    medications: list[dict[str, Any]],
    prefetch: dict[str, Any],
) -> dict[str, Any]:
    """The request an EHR sends when ``order`` is signed (or selected, or prescribed)."""
    orders = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in [order, *medications]],
    }
    context: dict[str, Any] = {"patientId": patient}
    if hook == "medication-prescribe":
        context["medications"] = orders
    else:
        context["draftOrders"] = orders
    if hook == "order-select":
        context["selections"] = [f"{order.get('resourceType')}/{order.get('id')}"]
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server,
        "context": context,
        "prefetch": prefetch,
    }
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer"}
    return body


@dataclass(frozen=True)
class Results:
    """A patient's genomic results as read for the cards' dates (None: not prefetched)."""

    facts: dict[str, GeneResult]
    observations: dict[str, dict[str, Any]]  # id -> Observation


def results_of(
    engine: Engine, patient: str, prefetch: dict[str, Any], fhir_server: str
) -> Results | None:
    """The patient's results, one per gene, read by the genomics stage from the prefetch
    (for the dates of the result each card rests on)."""
    value = prefetch.get(GENOMIC_RESULTS)
    if not isinstance(value, dict):
        return None
    resources = [
        e["resource"]
        for e in value.get("entry", [])
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    facts = genomic_facts.summarise(
        resources,
        patient,
        engine.knowledge,
        Trace(),
        None,
        fhir_base=fhir_server,
        memo=engine.facts_memo,
    )
    observations = {
        as_str(r.get("id")): r for r in resources if r.get("resourceType") == "Observation"
    }
    return Results(facts, observations)


class Judge:
    """Judges orders with ``engine`` as the hook ``hook`` would, on ``fhir_server``."""

    def __init__(self, engine: Engine, hook: str, fhir_server: str, token: str | None) -> None:
        self.engine = engine
        self.hook = hook
        self.fhir_server = fhir_server
        self.token = token
        knowledge = engine.knowledge
        self.recommendations = {r.id: r for r in knowledge.recommendations}
        self.label_rules = {r.id: r for r in knowledge.label_rules}
        self.unclear_rules = {r.id: r for r in knowledge.unclear_rules}

    def order(
        self,
        patient: str,
        reference: str,
        resource: dict[str, Any],
        medications: dict[str, dict[str, Any]],
        prefetch: dict[str, Any],
        results: Results | None,
    ) -> list[Row]:
        """The worklist's rows for one order (``ClientError``: it could not be judged)."""
        order = as_order(resource)
        ref = _medication_of(order)
        local = ref.removeprefix(self.fhir_server.rstrip("/") + "/")
        sent = medications.get(local)
        beside = [sent] if sent is not None else []
        body = hook_body(self.hook, self.fhir_server, self.token, patient, order, beside, prefetch)
        answer, _ = self.engine.evaluate(parse_hook_request(body, self.hook))
        draft = DraftOrder(order, {ref: sent} if sent is not None else {})
        rows = []
        for card in answer["cards"]:
            if card.get("indicator") not in LISTED:
                continue
            rows.append(self._row(card, patient, reference, resource, draft, results))
        return rows

    def _row(
        self,
        card: dict[str, Any],
        patient: str,
        reference: str,
        resource: dict[str, Any],
        draft: DraftOrder,
        results: Results | None,
    ) -> Row:
        topic = as_str(as_dict(as_dict(card.get("source")).get("topic")).get("code"))
        recommendation = self.recommendations.get(topic)
        unclear = self.unclear_rules.get(topic)
        rule = self.label_rules.get(topic)
        genes: tuple[str, ...] = ()
        if recommendation:
            drug, genes = recommendation.drug, recommendation.genes
        elif unclear:
            drug, genes = unclear.drug, (unclear.marker,)
        elif rule:
            drug = rule.drug
        else:
            drug = ", ".join(d.drug for d in identify(draft, self.engine.knowledge)[0])
        result_date, issued = _dates(genes, results)
        written = order_date(resource) or as_str(as_dict(resource.get("meta")).get("lastUpdated"))
        return Row(
            indicator=card["indicator"],
            patient=f"Patient/{patient}",
            order=reference,
            status=as_str(resource.get("status")),
            order_date=order_date(resource),
            medication=medication_text(draft),
            drug=drug,
            genes="/".join(genes),
            summary=as_str(card.get("summary")),
            advice=advice(as_str(card.get("detail"))),
            detail=as_str(card.get("detail")),
            result_date=result_date,
            result_issued=issued,
            recommendation=topic,
            # an age rule rests on the order alone; a card on results whose date is unknown
            # (or on what the worklist does not know, e.g. a label rule on the chart's
            # procedures, conditions or breastfeeding status): unknown, kept by --since
            changed_since=_latest(written, issued or result_date)
            if result_date or issued or (rule is not None and not rule.requires)
            else "",
        )


def _medication_of(order: dict[str, Any]) -> str:
    holder = order.get("medicationReference") or as_dict(order.get("medication"))
    return as_str(as_dict(holder).get("reference"))


def _dates(genes: tuple[str, ...], results: Results | None) -> tuple[str, str]:
    """The date of the result(s) a card rests on, and when they were issued (the newest)."""
    if results is None:
        return "", ""
    dates: list[str] = []
    issued: list[str] = []
    for gene in genes:
        found = results.facts.get(gene)
        if found is None:
            continue
        if found.date_text:
            dates.append(found.date_text)
        for oid in _OBSERVATION.findall(found.observation):
            observation = results.observations.get(oid, {})
            value = as_str(observation.get("issued"))
            if value:
                issued.append(value)
    return _latest(*dates), _latest(*issued)


def _latest(*values: str) -> str:
    """The latest of some FHIR dates (as written); unreadable ones count as the oldest."""
    known = [(parse_date(v), v) for v in values if v and parse_date(v) is not None]
    return max(known)[1] if known else ""


def _without_links(text: str) -> str:
    """Markdown links '[text](url)' as their text: what ``re.sub(r"\\[([^\\]]*)\\]\\([^)]*\\)",
    r"\\1", text)`` gives, in linear time (that pattern tried again from each '[' of a long run
    of them: time growing with the square of the run, tests/test_patterns.py)."""
    out, kept, start = [], 0, 0
    while True:
        opening = text.find("[", start)
        closing = text.find("]", opening + 1) if opening >= 0 else -1
        if closing < 0:
            break
        if not text.startswith("(", closing + 1):
            start = closing + 1  # each '[' before this ']' meets it and fails the same way
            continue
        end = text.find(")", closing + 2)
        if end < 0:
            break  # no ')' from here on: no link further on either
        out += [text[kept:opening], text[opening + 1 : closing]]
        kept = start = end + 1
    out.append(text[kept:])
    return "".join(out)


def advice(detail: str) -> str:
    """The card's advice: the first paragraph of its detail, as plain text."""
    first = detail.strip().split("\n\n", 1)[0]
    text = _without_links(first).replace("**", "").replace("`", "")
    return " ".join(text.split())
