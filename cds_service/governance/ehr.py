"""Cards shaped for the EHR that shows them (the site file's ``"ehr"``).

``standard`` leaves the cards as CDS Hooks 2.0.1 writes them. ``epic`` adapts them to what
Epic's CDS Hooks documentation says it supports (docs/ehr-registration.md lists the sources):

* ``selectionBehavior`` is ``any`` (Epic: "Only the value "any" is currently supported").
* One action per suggestion (Epic: "Epic only supports a single action per suggestion"). Our
  replacements delete the draft and create the alternative in one suggestion; Epic cannot
  do both, and a created order would get none of our details (Epic fills them from its own
  defaults), so a create on its own could add a second drug beside the first, at a dose we
  never saw. So each draft a replacement would delete becomes one suggestion that only
  removes it, its description naming the alternatives (and a dose suggestion's dose) for the
  clinician to order in Epic. A suggestion that already has a single action is kept.
* ``source.topic.code`` is letters and digits only, at most 100 (Epic: "alpha-numeric
  strings", "Maximum Length: 100"): ``codeine-cyp2d6-um`` is sent as ``codeinecyp2d6um``
  (``epic_topic``; the knowledge's ids stay distinct that way, a test checks it).
* RxNorm codes in a created order use the system ``urn:oid:2.16.840.1.113883.6.88`` (Epic's
  code table for MedicationRequest create).

Only what is sent changes: the card log, metrics and the trace keep the service's own ids.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any, Literal

Ehr = Literal["standard", "epic"]
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RXNORM_OID = "urn:oid:2.16.840.1.113883.6.88"
TOPIC_MAX = 100
_NOT_ALPHANUMERIC = re.compile(r"[^A-Za-z0-9]")


def epic_topic(code: str) -> str:
    """A topic code as Epic accepts it: letters and digits, at most 100."""
    return _NOT_ALPHANUMERIC.sub("", code)[:TOPIC_MAX]


def adapt(cards: list[dict[str, Any]], ehr: Ehr) -> list[dict[str, Any]]:
    """The cards as ``ehr`` gets them (``standard``: unchanged, the same list)."""
    if ehr == "standard":
        return cards
    return [_for_epic(card) for card in cards]


def _for_epic(card: dict[str, Any]) -> dict[str, Any]:
    card = copy.deepcopy(card)
    topic = (card.get("source") or {}).get("topic")
    if isinstance(topic, dict) and isinstance(topic.get("code"), str):
        topic["code"] = epic_topic(topic["code"])
    suggestions = [s for s in (_single_action(card.get("suggestions") or [])) if s]
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    else:
        card.pop("suggestions", None)
        card.pop("selectionBehavior", None)
    return card


def _single_action(suggestions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each suggestion with one action (see the module's notes), in the order given."""
    out: list[dict[str, Any]] = []
    removals: dict[str, dict[str, Any]] = {}  # draft id -> the suggestion that removes it
    instead: dict[str, list[str]] = {}  # draft id -> what the replacements would create
    for suggestion in suggestions:
        actions = suggestion.get("actions") or []
        if len(actions) == 1:
            for action in actions:
                _epic_codes(action.get("resource"))
            out.append(suggestion)
            continue
        creates = [_described(a) for a in actions if a.get("type") == "create"]
        for action in actions:
            target = action.get("resourceId")
            if action.get("type") != "delete" or not isinstance(target, str):
                continue
            instead.setdefault(target, []).extend(c for c in creates if c)
            if target not in removals:
                removals[target] = {
                    "label": str(action.get("description") or "Remove the draft order"),
                    "uuid": str(uuid.uuid4()),
                    "actions": [dict(action)],
                }
                out.append(removals[target])
    for target, suggestion in removals.items():
        options = list(dict.fromkeys(instead.get(target, [])))
        (action,) = suggestion["actions"]
        removal = str(action.get("description") or "Remove the draft order")
        if options:
            action["description"] = (
                f"{removal}; then order one of these in its place (set its dose): "
                + "; ".join(options)
            )
        suggestion["label"] = action["description"]
    return out


def _described(action: dict[str, Any]) -> str:
    """What a create action would have ordered, in a few words."""
    resource = action.get("resource")
    if not isinstance(resource, dict):
        return ""
    concept = resource.get("medicationCodeableConcept") or resource.get("code") or {}
    name = concept.get("text") if isinstance(concept, dict) else None
    dosage = resource.get("dosageInstruction")
    dose = dosage[0].get("text") if isinstance(dosage, list) and dosage else None
    if not isinstance(name, str):
        return ""
    return f"{name}, {dose}" if isinstance(dose, str) else name


def _epic_codes(resource: Any) -> None:
    """RxNorm codings of a created medication order in Epic's system (in place)."""
    if not isinstance(resource, dict):
        return
    concept = resource.get("medicationCodeableConcept")
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and coding.get("system") == RXNORM:
            coding["system"] = RXNORM_OID
