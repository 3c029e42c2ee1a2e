"""What the order and the chart say beyond the drug, for the label rules.

A *finding* of ``knowledge/rules/label_rules.json`` (a tonsillectomy, obesity, obstructive
sleep apnoea, severe lung disease, breastfeeding) is recognised by its codes (any system the
file lists, compared without dots and case, by code or prefix), by whole words, and by
case-sensitive abbreviations ("T&A") that never match inside another word; a negated mention
("no obesity", "non-obese") does not count. It is looked for in:

* the order's reasons: coded reasons and their text, and the Condition or Procedure a
  ``reasonReference`` names (contained, among the chart's resources read, or read from the
  FHIR server; else the reference's display);
* the patient's Procedures: performed within the finding's ``recent_days``, planned or in
  progress (not ``not-done`` or ``entered-in-error``; one without a date only *suggests* it);
* the patient's Conditions: clinical status active, recurrence or relapse, not refuted or
  entered in error (unconfirmed, provisional or differential ones only *suggest* it);
* breastfeeding-status Observations: the latest within ``recent_days`` that says yes or no
  decides.

Evidence that suggests a finding without proving it (the usual indication of a surgery as the
order's reason, a procedure without a date, an unconfirmed diagnosis) is kept as such: the
rule's card is then at most a warning and says what is uncertain.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache, partial
from typing import Any, cast

from ..core.trace import Trace
from ..fhir.values import as_dict, as_str, is_about, objects, parse_date, texts
from ..knowledge.loader import Knowledge
from ..knowledge.models import CodeSet, Finding
from .medications import MAX_TEXT_READ, RXNORM_SYSTEMS, IdentifiedDrug, negated_at

#: Where a finding is looked for on the chart (``Finding.chart``), and its FHIR type.
CHART_TYPES = {"procedures": "Procedure", "conditions": "Condition", "observations": "Observation"}

_CURRENT_CONDITION = frozenset({"active", "recurrence", "relapse"})
_NOT_CONFIRMED = frozenset({"unconfirmed", "provisional", "differential"})
_NOT_REAL = frozenset({"refuted", "entered-in-error"})
_PROCEDURE_NOT_DONE = frozenset({"not-done", "entered-in-error"})
_PROCEDURE_UNDER_WAY = frozenset({"preparation", "in-progress"})
_OBSERVATION_NOT_REAL = frozenset({"entered-in-error", "cancelled"})


@dataclass(frozen=True)
class Evidence:
    """Why a finding is thought present: ``text`` for the card (request words made inert
    there), ``certain`` False when it only suggests the finding (``text`` says why)."""

    finding: str
    text: str
    certain: bool = True


@dataclass
class Chart:
    """The chart's resources the label rules may use. ``loaders`` give each kind
    (``procedures``, ``conditions``, ``observations``: the breastfeeding-status search) when
    first asked, or None when it could not be had (not prefetched and no FHIR server, or the
    read failed); ``resolve`` reads a referenced Condition or Procedure from the FHIR server."""

    patient_id: str
    fhir_base: str | None = None
    loaders: Mapping[str, Callable[[], list[dict[str, Any]] | None]] = field(default_factory=dict)
    resolve: Callable[[str], dict[str, Any] | None] | None = None
    _read: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict, repr=False)

    def resources(self, kind: str) -> list[dict[str, Any]] | None:
        """The resources of ``kind`` about this patient (read once), or None if not read."""
        if kind not in self._read:
            load = self.loaders.get(kind)
            found = load() if load is not None else None
            self._read[kind] = (
                None
                if found is None
                else [
                    r
                    for r in found
                    if isinstance(r, dict)
                    and r.get("resourceType") == CHART_TYPES[kind]
                    and is_about(r, self.patient_id, self.fhir_base)
                ]
            )
        return self._read[kind]


# -- recognising a finding -------------------------------------------------------------------


@dataclass(frozen=True)
class _Codes:
    """One system's codes of a finding: exact codes, prefixes, exclusions (normalised), and
    what each group is (for the card)."""

    groups: tuple[tuple[frozenset[str], tuple[str, ...], tuple[str, ...], str], ...]

    def match(self, code: str) -> bool:
        for exact, prefixes, excluding, _what in self.groups:
            if code in exact or (
                code.startswith(prefixes) and not (excluding and code.startswith(excluding))
            ):
                return True
        return False

    def excluded(self, code: str) -> bool:
        """Is ``code`` left out on purpose (E66.3 overweight from obesity's E66)?"""
        return any(excluding and code.startswith(excluding) for _, _, excluding, _ in self.groups)


@dataclass(frozen=True)
class Matcher:
    """A finding compiled for matching (once per knowledge): codes by system URI, the
    suggesting codes, and one pattern for its words and one for its abbreviations."""

    name: str
    finding: Finding
    codes: Mapping[str, _Codes]
    possible: Mapping[str, _Codes]
    words: re.Pattern[str] | None
    abbreviations: re.Pattern[str] | None
    system_names: Mapping[str, str]
    #: a status Observation's codes, and its answers that say yes and no
    observation: tuple[Mapping[str, _Codes], Mapping[str, _Codes], Mapping[str, _Codes]] | None

    def excluded(self, concept: Any) -> bool:
        """Does the concept carry a code this finding leaves out on purpose?"""
        for coding in objects(as_dict(concept).get("coding")):
            system, code = as_str(coding.get("system")), normalise(as_str(coding.get("code")))
            if code and system in self.codes and self.codes[system].excluded(code):
                return True
        return False

    def coded(self, concept: Any, possible: bool = True) -> tuple[str, bool] | None:
        """(the matching code as '<system> <code>', certain) for a CodeableConcept."""
        found: tuple[str, bool] | None = None
        for coding in objects(as_dict(concept).get("coding")):
            system, code = as_str(coding.get("system")), normalise(as_str(coding.get("code")))
            if not code:
                continue
            shown = f"{self.system_names.get(system, system)} {as_str(coding.get('code'))}"
            display = as_str(coding.get("display"))[:80]
            shown += f" '{display}'" if display else ""
            if system in self.codes and self.codes[system].match(code):
                return shown, True
            if possible and system in self.possible and self.possible[system].match(code):
                found = found or (shown, False)
        return found

    def named(self, text: str) -> str | None:
        """The word or abbreviation ``text`` names plainly (not negated), if any."""
        text = html.unescape(text[:MAX_TEXT_READ])
        lowered = text.lower()
        for pattern, haystack in ((self.words, lowered), (self.abbreviations, text)):
            if pattern is None:
                continue
            for m in pattern.finditer(haystack):
                if not negated_at(lowered, m.start(), m.end()):
                    return m.group(0)
        return None

    def concept(self, concept: Any, possible: bool = True) -> tuple[str, bool] | None:
        """A CodeableConcept's match: by code first, else by a word of its text or displays."""
        coded = self.coded(concept, possible)
        if coded is not None and coded[1]:
            return coded
        if self.excluded(concept):
            return coded  # (a code left out on purpose: its display's words do not count)
        for text in texts(concept):
            word = self.named(text)
            if word is not None:
                return f"'{word}'", True
        return coded


def normalise(code: str) -> str:
    """'G47.33' and 'g4733' are one code."""
    return code.strip().replace(".", "").upper()


def _compile_codes(sets: list[CodeSet], knowledge: Knowledge) -> dict[str, _Codes]:
    systems = knowledge.label_rule_file.systems
    by_uri: dict[str, list[tuple[frozenset[str], tuple[str, ...], tuple[str, ...], str]]] = {}
    for s in sets:
        group = (
            frozenset(normalise(c) for c in s.codes),
            tuple(normalise(p) for p in s.prefixes),
            tuple(normalise(e) for e in s.excluding),
            s.what,
        )
        for uri in systems[s.system].uris:
            by_uri.setdefault(uri, []).append(group)
    return {uri: _Codes(tuple(groups)) for uri, groups in by_uri.items()}


def _pattern(words: Iterable[str], keep_case: bool = False) -> re.Pattern[str] | None:
    """One pattern for ``words`` (lower-cased unless ``keep_case``: match it against
    lower-cased text then), never inside another word: no letter, digit, '&' or '+' on
    either side, any run of spaces between a phrase's words."""
    ordered = sorted({w if keep_case else w.lower() for w in words}, key=len, reverse=True)
    if not ordered:
        return None
    alternatives = "|".join(re.sub(r"(?:\\ )+", r"\\s+", re.escape(w)) for w in ordered)
    return re.compile(rf"(?<![A-Za-z0-9&+])(?:{alternatives})(?![A-Za-z0-9&+])")


@lru_cache(maxsize=8)
def matchers(knowledge: Knowledge) -> dict[str, Matcher]:
    """Every finding of the label rules, compiled once per knowledge."""
    rules = knowledge.label_rule_file
    names = {uri: s.name for s in rules.systems.values() for uri in s.uris}
    return {
        name: Matcher(
            name,
            f,
            _compile_codes(f.codes, knowledge),
            _compile_codes(f.possible_codes, knowledge),
            _pattern(f.words),
            _pattern(f.abbreviations, keep_case=True),
            names,
            None
            if f.observation is None
            else (
                _compile_codes(f.observation.codes, knowledge),
                _compile_codes(f.observation.positive, knowledge),
                _compile_codes(f.observation.negative, knowledge),
            ),
        )
        for name, f in rules.findings.items()
    }


# -- where findings are looked for -------------------------------------------------------------


def order_reasons(resource: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The order's coded reasons and its reason references, as R4 (``reasonCode``,
    ``reasonReference``), DSTU2 (``reasonCodeableConcept``, one ``reasonReference``) and R5
    (``reason``: CodeableReference) write them."""
    concepts: list[dict[str, Any]] = []
    references = list(objects(resource.get("reasonReference")))
    for name in ("reasonCode", "reasonCodeableConcept", "reason"):
        for item in objects(resource.get(name)):
            if name == "reason" and ("concept" in item or "reference" in item):
                concepts += objects(item.get("concept"))
                references += objects(item.get("reference"))
            else:
                concepts.append(item)
    return concepts, references


def _contained(resource: dict[str, Any], reference: str) -> dict[str, Any] | None:
    for item in objects(resource.get("contained")):
        if reference == f"#{as_str(item.get('id'))}":
            return item
    return None


def _by_id(chart: Chart | None, reference: str) -> dict[str, Any] | None:
    """A referenced resource among the chart's resources (read ahead anyway), by Type/id."""
    if chart is None:
        return None
    base = (chart.fhir_base or "").rstrip("/") + "/"
    if chart.fhir_base and reference.startswith(base):
        reference = reference[len(base) :]
    kind = {"Procedure": "procedures", "Condition": "conditions"}.get(reference.split("/")[0])
    if kind is None or kind not in chart.loaders:
        return None
    for item in chart.resources(kind) or []:
        if reference == f"{item.get('resourceType')}/{as_str(item.get('id'))}":
            return item
    return None


class Findings:
    """The findings of one call, each looked for once: in the chart (shared by every order)
    and in each order's reasons. ``missing`` says which chart sources were not read."""

    def __init__(
        self, knowledge: Knowledge, chart: Chart | None, trace: Trace, today: date
    ) -> None:
        self.matchers = matchers(knowledge)
        self.chart = chart
        self.trace = trace
        self.today = today
        self._on_chart: dict[str, tuple[list[Evidence], list[str]]] = {}
        self._resolved: dict[str, dict[str, Any] | None] = {}

    def in_order(self, drug: IdentifiedDrug, name: str) -> list[Evidence]:
        """Evidence of finding ``name`` in the order's reasons."""
        matcher = self.matchers[name]
        resource = drug.order.resource
        concepts, references = order_reasons(resource)
        found: list[Evidence] = []
        for concept in concepts:
            hit = matcher.concept(concept)
            if hit is not None:
                how, certain = hit
                found.append(Evidence(name, f"the order's reason: {how}", certain))
        for ref in references:
            found += self._referenced(resource, ref, matcher)
        return found

    def _referenced(
        self, resource: dict[str, Any], ref: dict[str, Any], matcher: Matcher
    ) -> list[Evidence]:
        reference = as_str(ref.get("reference"))
        target = self._resolve(resource, reference) if reference else None
        display = as_str(ref.get("display"))
        if target is None:
            word = matcher.named(display) if display else None
            if word is None:
                return []
            return [Evidence(matcher.name, f"the order's reason: '{display[:80]}'")]
        kind = as_str(target.get("resourceType"))
        status = as_str(target.get("status"))
        verification = _code_of(target.get("verificationStatus"))
        if status in _PROCEDURE_NOT_DONE or verification in _NOT_REAL:
            self.trace.add("label rules", f"the order's reason {kind} is {status or verification}")
            return []
        hit = matcher.concept(target.get("code"))
        if hit is None:
            return []
        how, certain = hit
        return [Evidence(matcher.name, f"the order's reason, a {kind}: {how}", certain)]

    def _resolve(self, resource: dict[str, Any], reference: str) -> dict[str, Any] | None:
        if reference in self._resolved:
            return self._resolved[reference]
        found = _contained(resource, reference) or _by_id(self.chart, reference)
        kind = reference.split("/")[-2] if "/" in reference else ""
        resolve = self.chart.resolve if self.chart is not None else None
        if found is None and resolve is not None and kind in ("Condition", "Procedure"):
            found = resolve(reference)
        self._resolved[reference] = found
        return found

    def on_chart(self, name: str) -> tuple[list[Evidence], list[str]]:
        """Evidence of finding ``name`` in the chart, and the chart sources it should be
        looked for in that were not read (None: not prefetched, no server, or failed)."""
        if name in self._on_chart:
            return self._on_chart[name]
        matcher = self.matchers[name]
        found: list[Evidence] = []
        missing: list[str] = []
        for kind in matcher.finding.chart:
            resources = self.chart.resources(kind) if self.chart is not None else None
            if resources is None:
                missing.append(kind)
                continue
            read = {
                "procedures": self._procedures,
                "conditions": self._conditions,
                "observations": self._observations,
            }[kind]
            found += read(matcher, resources)
        self._on_chart[name] = (found, missing)
        return found, missing

    def _procedures(self, matcher: Matcher, resources: list[dict[str, Any]]) -> list[Evidence]:
        days = matcher.finding.recent_days or 0
        since = self.today - timedelta(days=days)
        found = []
        for proc in resources:
            hit = matcher.concept(proc.get("code"), possible=False)
            if hit is None:
                continue
            name = f"Procedure/{as_str(proc.get('id'))}"
            how, _ = hit
            status = as_str(proc.get("status"))
            if status in _PROCEDURE_NOT_DONE:
                self.trace.add("label rules", f"{name} ({matcher.name}) is {status}: not counted")
                continue
            when = _performed(proc)
            said = f"Procedure {how}" + (f", {status}" if status else "")
            if when is None and status in _PROCEDURE_UNDER_WAY:
                found.append(Evidence(matcher.name, said + " (no date)"))
            elif when is None:
                self.trace.add("label rules", f"{name} ({matcher.name}) has no date: may be recent")
                found.append(Evidence(matcher.name, said + ": no date, so it may be recent", False))
            elif when >= since:
                found.append(Evidence(matcher.name, f"{said} on {when.isoformat()}"))
            else:
                self.trace.add(
                    "label rules",
                    f"{name} ({matcher.name}) of '{when.isoformat()}': more than {days} days "
                    "ago, not counted",
                )
        return found

    def _conditions(self, matcher: Matcher, resources: list[dict[str, Any]]) -> list[Evidence]:
        found = []
        for cond in resources:
            hit = matcher.concept(cond.get("code"), possible=False)
            if hit is None:
                continue
            name = f"Condition/{as_str(cond.get('id'))}"
            clinical = _code_of(cond.get("clinicalStatus"))
            verification = _code_of(cond.get("verificationStatus"))
            if verification in _NOT_REAL or clinical not in _CURRENT_CONDITION:
                why = verification if verification in _NOT_REAL else clinical or "no status"
                self.trace.add("label rules", f"{name} ({matcher.name}) is {why}: not counted")
                continue
            how, _ = hit
            if verification in _NOT_CONFIRMED:
                found.append(Evidence(matcher.name, f"Condition {how}, {verification}", False))
            else:
                found.append(Evidence(matcher.name, f"Condition {how}, {clinical}"))
        return found

    def _observations(self, matcher: Matcher, resources: list[dict[str, Any]]) -> list[Evidence]:
        """The latest status within ``recent_days`` that says yes or no decides."""
        spec = matcher.finding.observation
        if spec is None or matcher.observation is None:
            return []
        status_codes, yes, no = matcher.observation
        since = self.today - timedelta(days=spec.recent_days)
        dated = []
        for obs in resources:
            if not _any_code(obs.get("code"), status_codes):
                continue
            when = _effective(obs)
            name = f"Observation/{as_str(obs.get('id'))}"
            if as_str(obs.get("status")) in _OBSERVATION_NOT_REAL:
                self.trace.add("label rules", f"{name} ({matcher.name}): {obs.get('status')}")
            elif when is None or when < since:
                self.trace.add(
                    "label rules",
                    f"{name} ({matcher.name}): "
                    + ("no date" if when is None else f"older than {spec.recent_days} days")
                    + ": not used",
                )
            else:
                dated.append((when, obs))
        for when, obs in sorted(dated, key=lambda pair: pair[0], reverse=True):
            value = obs.get("valueBoolean")
            concept = obs.get("valueCodeableConcept")
            said = " ".join(texts(concept)[:1]) or str(value)
            if value is True or _any_code(concept, yes):
                return [Evidence(matcher.name, f"status of {when.isoformat()}: '{said}'")]
            if value is False or _any_code(concept, no):
                self.trace.add(
                    "label rules",
                    f"Observation/{as_str(obs.get('id'))}: the latest {matcher.name} status says "
                    "no: not counted",
                )
                return []
        return []


def _any_code(concept: Any, compiled: Mapping[str, _Codes]) -> bool:
    return any(
        as_str(c.get("system")) in compiled
        and compiled[as_str(c.get("system"))].match(normalise(as_str(c.get("code"))))
        for c in objects(as_dict(concept).get("coding"))
    )


def _code_of(concept: Any) -> str:
    """The first code of a status CodeableConcept (R4), or the code itself (STU3 strings)."""
    if isinstance(concept, str):
        return concept
    for coding in objects(as_dict(concept).get("coding")):
        if as_str(coding.get("code")):
            return as_str(coding.get("code"))
    return ""


def _day(value: Any) -> date | None:
    parsed = parse_date(value) if isinstance(value, str) and value else None
    return parsed.date() if parsed is not None else None


def _performed(proc: dict[str, Any]) -> date | None:
    """When a procedure was (or will be) performed: the end of its period, else its start."""
    period = as_dict(proc.get("performedPeriod"))
    for value in (proc.get("performedDateTime"), period.get("end"), period.get("start")):
        day = _day(value)
        if day is not None:
            return day
    return None


def _effective(obs: dict[str, Any]) -> date | None:
    period = as_dict(obs.get("effectivePeriod"))
    for value in (obs.get("effectiveDateTime"), period.get("end"), period.get("start")):
        day = _day(value)
        if day is not None:
            return day
    return None


# -- the ordered product --------------------------------------------------------------------


@lru_cache(maxsize=8)
def _cough_cold_words(knowledge: Knowledge) -> re.Pattern[str]:
    """Ingredients, brands of the marked products, and words such as 'cough', as one pattern."""
    spec = knowledge.label_rule_file.cough_cold
    brands = {
        m.group(1).strip().lower()
        for rxcui in knowledge.cough_cold_products
        if (m := re.search(r"\[([^\[\]]+)\]\s*$", knowledge.product_names.get(rxcui, "")))
    }
    pattern = _pattern([*spec.ingredients, *spec.words, *brands])
    assert pattern is not None  # (ingredients are required)
    return pattern


def cough_cold_product(drug: IdentifiedDrug, knowledge: Knowledge) -> Evidence | None:
    """Is the ordered product a prescription opioid cough-and-cold medicine (by its RxNorm
    code, else by its text), or is the opioid ordered for cough (directions, reason)?
    Asked once per ordered drug (the label rules ask it twice: which chart reads they need,
    and whether a rule applies)."""
    asked = drug.answers.get("cough-cold product")
    if asked is not None and asked[0] is knowledge:
        return cast(Evidence | None, asked[1])
    found = _cough_cold_product(drug, knowledge)
    drug.answers["cough-cold product"] = (knowledge, found)
    return found


def _cough_cold_product(drug: IdentifiedDrug, knowledge: Knowledge) -> Evidence | None:
    concept = drug.order.medication or {}
    for coding in objects(concept.get("coding")):
        code = as_str(coding.get("code"))
        if coding.get("system") in RXNORM_SYSTEMS and code in knowledge.cough_cold_products:
            return Evidence("cough-cold-product", f"RxNorm {code}")
    pattern = _cough_cold_words(knowledge)
    resource = drug.order.resource
    said = [drug.medication_text, *texts(concept)]
    said += [as_str(d.get("text")) for d in objects(resource.get("dosageInstruction"))]
    said += [t for c in order_reasons(resource)[0] for t in texts(c)]
    # each text searched once (the same product names and directions come back call after
    # call, and the pattern is long: every marked product's brand)
    kept = knowledge.remembered("cough-and-cold word")
    for text in said:
        text = text[:MAX_TEXT_READ]
        word = kept.get(text, partial(_cough_cold_word, text, pattern))
        if word is not None:
            return Evidence("cough-cold-product", f"the order names '{word}'")
    return None


def _cough_cold_word(text: str, pattern: re.Pattern[str]) -> str | None:
    """The first cough-and-cold word ``text`` names, not negated."""
    lowered = html.unescape(text).lower()
    for m in pattern.finditer(lowered):
        if not negated_at(lowered, m.start(), m.end()):
            return m.group(0)
    return None
