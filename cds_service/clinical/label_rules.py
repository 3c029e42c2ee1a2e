"""What the order and the patient add to the guideline row: the ordered dose, FDA label rules
(age, and what the chart says) and a missing test (pre-test cards).

* **Dose.** CPIC's tricyclic dose advice is written for depression doses; an order at or
  below the low-dose limit in ``knowledge/rules/dosing.json`` (neuropathic-pain doses) gets a
  caution card instead of "avoid". Where CPIC gives a dose change, the card computes it for
  the ordered drug and strength.
* **Label rules** (``knowledge/rules/label_rules.json``), whatever the genotype, each its own
  card citing the FDA communication: codeine, tramadol and dihydrocodeine contraindicated
  under 12, and under 18 after tonsillectomy or adenoidectomy; codeine and hydrocodone cough
  and cold medicines for adults only (2018); codeine and tramadol not recommended while
  breastfeeding, nor at 12 to 18 with obesity, obstructive sleep apnoea or severe lung disease
  (2017). The age comes from the Patient's birth date; the findings from the order's reasons
  and the chart (``chart.py``). Where the inputs leave a rule open (a birth date of a year or
  a month on both sides of a limit, a reason that only suggests a tonsillectomy), the card is
  still given, at most a warning, and says what to confirm. Missing inputs (no Patient, no
  Conditions read) give no card, and the trace says so.
* **Pre-test.** Carbamazepine or oxcarbazepine ordered with no HLA-B*15:02 result on file:
  an info card suggesting the test (on by default); others switched on per site.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Any

from ..core.trace import Trace
from ..core.wording import number
from ..genomics.gene_decision import GeneResult
from ..knowledge.loader import Knowledge
from ..knowledge.models import COUGH_COLD, LabelRule, RuleSource
from . import order_details
from .chart import Chart, Evidence, Findings, cough_cold_product, matchers
from .medications import IdentifiedDrug
from .order_details import age_range, birth_date_precision, drug_dose
from .recommendations import Match


@dataclass(frozen=True)
class Notice:
    """A card that is not a genotype-guideline row: a label rule or a pre-test card."""

    id: str
    drug: IdentifiedDrug
    indicator: str
    summary: str
    text: str
    source: RuleSource
    test: tuple[str, str | None] | None = None  # (display, LOINC) of a test to suggest
    #: the unclear result on file the card is about (``unclear_results``), shown on the card
    result: GeneResult | None = None
    #: what made a label rule apply to this patient and order (age, findings), for the card
    facts: tuple[str, ...] = ()
    #: what leaves it open (a partial birth date, a finding only suggested): confirm these
    uncertain: tuple[str, ...] = ()
    #: what the card is about, for the card log ("age", "age, tonsillectomy", ...)
    basis: str = "age"


def with_dose(m: Match, knowledge: Knowledge, trace: Trace) -> Match:
    """The order's dose against the row's dose advice (see the module's notes)."""
    drug = m.drug.drug
    dosing = knowledge.dosing.drugs.get(drug)
    change = knowledge.dosing.dose_changes.get(m.recommendation.id)
    if dosing is None or m.possible:
        return m
    dose = drug_dose(m.drug, knowledge)
    if dose.problem:
        trace.add("dose", f"{drug}: {dose.problem}")
    ordered = f"ordered {drug} {dose.describe()}"
    most = dose.max_mg_per_day  # a low dose only if the order never allows more
    if (
        dosing.low_dose_max_mg_per_day is not None
        and most is not None
        and most <= dosing.low_dose_max_mg_per_day
        and m.recommendation.action in ("avoid", "alternative", "adjust-dose")
        and knowledge.organization(m.recommendation) in dosing.low_dose_guidelines
    ):
        trace.add(
            "dose",
            f"{drug}: at most {number(most)} mg/day is a low (pain) dose "
            f"(≤{number(dosing.low_dose_max_mg_per_day)} mg/day): caution, not the "
            "depression-dose advice",
        )
        return replace(
            m,
            low_dose=True,
            dose_text=f"{ordered}. This is a low dose, as used for neuropathic pain "
            f"(≤{number(dosing.low_dose_max_mg_per_day)} mg/day): CPIC's dose advice is written "
            "for the higher starting doses used for depression, so it does not apply as such. Use "
            "with caution and watch for side effects (reduced metabolism) or a poor response "
            "(increased metabolism).",
        )
    if change is None:
        return m
    if change.basis in ("ordered", "maintenance"):
        daily = dose.mg_per_day
        span = (daily, daily) if daily is not None else dose.mg_per_day_range
        what = "the ordered daily dose"
        if span is not None and span[0] != span[1]:
            what += f" ({number(span[0])}–{number(span[1])} mg/day)"
        if change.basis == "maintenance":
            what += " as the maintenance dose (the first, loading dose is not changed)"
    else:
        base = dosing.lowest_start_mg_per_day
        span = (base, base) if base is not None else None
        what = "the lowest starting dose" + (
            f" ({number(base)} mg/day)" if base is not None else ""
        )
    if span is None:
        trace.add("dose", f"{drug}: ordered dose not stated in mg and frequency: not computed")
        unclear = f" ({dose.problem})" if dose.problem else ""
        return replace(
            m,
            dose_text=f"{ordered}{unclear}: the guideline's advice applies in full.",
        )
    low, high = span[0] * change.low, span[1] * change.high
    target = f"{number(low)} mg/day" if low == high else f"{number(low)}–{number(high)} mg/day"
    pct = (
        f"{round(change.low * 100)}%"
        if change.low == change.high
        else f"{round(change.low * 100)}–{round(change.high * 100)}%"
    )
    guideline = m.recommendation.guideline
    who = guideline.organization if guideline else "guideline"
    advice = f"start at {pct} of {what}, about {target}"
    if change.basis == "lowest_start" and most is not None and most <= high + 1e-9:
        trace.add(
            "dose",
            f"{drug}: {dose.describe()}: at most {number(most)} mg/day, within the guideline "
            f"dose ({target}): no dose change needed",
        )
        return replace(
            m,
            within_target=True,
            dose_text=f"{ordered}: at most {number(most)} mg/day, within {who}'s adjusted dose "
            f"({advice}). No change needed; watch for side effects.",
            dose_target=(low, high),
        )
    trace.add("dose", f"{drug}: {dose.describe()}; guideline dose {target}")
    return replace(m, dose_text=f"{ordered}; {who}: {advice}.", dose_target=(low, high))


def patient_in_context(
    resources: list[dict[str, Any]] | None, patient_id: str, trace: Trace
) -> dict[str, Any] | None:
    """The Patient resource of the patient in context; another patient's is never used (its
    birth date would raise or silence a child's contraindication)."""
    for resource in resources or []:
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            continue
        if "id" in resource and str(resource["id"]) != patient_id:
            trace.add("age", "the Patient resource is another patient's: age rules not applied")
            return None
        return resource
    return None


@lru_cache(maxsize=8)
def _rules_by_drug(knowledge: Knowledge) -> dict[str, list[LabelRule]]:
    out: dict[str, list[LabelRule]] = {}
    for rule in knowledge.label_rules:
        out.setdefault(rule.drug, []).append(rule)
    return out


def _has_age(rule: LabelRule) -> bool:
    return rule.min_age_years is not None or rule.max_age_years is not None


def chart_needs(drugs: list[IdentifiedDrug], knowledge: Knowledge) -> tuple[bool, frozenset[str]]:
    """Whether the label rules of the ordered ``drugs`` need the Patient (an age limit), and
    which chart sources (``procedures``, ``conditions``, ``observations``) their findings are
    looked for in. A cough-and-cold rule needs nothing unless the product is one."""
    by_drug = _rules_by_drug(knowledge)
    findings = knowledge.label_rule_file.findings
    patient = False
    kinds: set[str] = set()
    for d in drugs:
        for rule in by_drug.get(d.drug, []):
            if rule.requires == [COUGH_COLD] and cough_cold_product(d, knowledge) is None:
                continue
            patient = patient or _has_age(rule)
            kinds.update(
                k for name in rule.requires if name in findings for k in findings[name].chart
            )
    return patient, frozenset(kinds)


def age_rules(
    drugs: list[IdentifiedDrug],
    patient: dict[str, Any] | None,
    knowledge: Knowledge,
    trace: Trace,
    chart: Chart | None = None,
    today: date | None = None,
) -> list[Notice]:
    """The label rules' cards for the ordered ``drugs`` (see the module's notes): ``patient``
    gives the age (None: unknown, age-limited rules are not applied); ``chart`` the Procedures,
    Conditions and breastfeeding status (None: only the orders' reasons are looked at)."""
    by_drug = _rules_by_drug(knowledge)
    ordered = [d for d in drugs if d.drug in by_drug]
    if not ordered:
        return []
    today = today or order_details.current_date()
    ages = age_range(patient, today)
    if any(_has_age(r) for d in ordered for r in by_drug[d.drug]):
        if patient is None:
            trace.add("age", "no Patient resource: the age is unknown, age rules not applied")
        elif ages is None:
            trace.add(
                "age", "the patient's birth date is missing or unreadable: age rules not applied"
            )
    found = Findings(knowledge, chart, trace, today)
    precision = birth_date_precision(patient)
    out = []
    for d in ordered:
        for rule in by_drug[d.drug]:
            notice = _judge(rule, d, ages, precision, found, knowledge, trace)
            if notice is not None:
                out.append(notice)
    return out


def _age_fit(rule: LabelRule, ages: tuple[int, int] | None) -> str | None:
    """'yes', 'possible' (the birth date puts the patient on both sides of a limit), 'no', or
    None (the rule has an age limit and the age is unknown)."""
    if not _has_age(rule):
        return "yes"
    if ages is None:
        return None
    low = rule.min_age_years if rule.min_age_years is not None else float("-inf")
    high = rule.max_age_years if rule.max_age_years is not None else float("inf")
    youngest, oldest = ages
    if youngest >= low and oldest < high:
        return "yes"
    if oldest >= low and youngest < high:
        return "possible"
    return "no"


def _limits(rule: LabelRule) -> str:
    if rule.min_age_years is not None and rule.max_age_years is not None:
        return f"{rule.min_age_years:g} to {rule.max_age_years:g}"
    if rule.max_age_years is not None:
        return f"under {rule.max_age_years:g}"
    return f"{rule.min_age_years:g} or over"


def _judge(
    rule: LabelRule,
    d: IdentifiedDrug,
    ages: tuple[int, int] | None,
    precision: str | None,
    found: Findings,
    knowledge: Knowledge,
    trace: Trace,
) -> Notice | None:
    """``rule``'s card for the order of ``d``, or None (the trace says why)."""
    if rule.requires == [COUGH_COLD] and cough_cold_product(d, knowledge) is None:
        return None  # (not a cough and cold medicine: the rule is not about this order)
    fit = _age_fit(rule, ages)
    where = f"{d.drug}: {rule.id}"
    if fit is None:
        trace.add("age", f"{where} not applied: the patient's age is unknown")
        return None
    if fit == "no":
        return None
    facts: list[str] = []
    uncertain: list[str] = []
    if ages is not None and _has_age(rule):
        youngest, oldest = ages
        age = f"{youngest}" if youngest == oldest else f"{youngest} or {oldest}"
        if fit == "possible":
            uncertain.append(
                f"the birth date on file gives only the {precision}: the patient may be {age} "
                f"years old, on both sides of the limit ({_limits(rule)})"
            )
        else:
            facts.append(f"age {age}")
    if rule.requires:
        evidence, missing = _evidence(rule, d, found, knowledge)
        label = {e.finding: _label(e.finding, knowledge) for e in evidence}
        sure = _unique(f"{label[e.finding]} ({e.text})" for e in evidence if e.certain)
        if not evidence:
            trace.add("label rules", f"{where} not applied: {_not_found(rule, missing, knowledge)}")
            return None
        if sure:
            facts += sure
        else:
            uncertain += _unique(f"{label[e.finding]} only suggested ({e.text})" for e in evidence)
    certain = not uncertain
    level = rule.indicator if certain or rule.indicator == "info" else "warning"
    trace.add(
        "label rules",
        f"{where} applies ({level}"
        + ("" if certain else ", uncertain: confirm")
        # (quoted: the patient's details are shown by explain, left out of the logs)
        + f"): '{'; '.join(facts + uncertain) or _limits(rule)}'",
    )
    return Notice(
        rule.id,
        d,
        level,
        rule.summary if certain else rule.possible_summary,
        rule.text,
        rule.source,
        facts=tuple(facts),
        uncertain=tuple(uncertain),
        basis=", ".join((["age"] if _has_age(rule) else []) + rule.requires),
    )


def _evidence(
    rule: LabelRule, d: IdentifiedDrug, found: Findings, knowledge: Knowledge
) -> tuple[list[Evidence], list[str]]:
    """Evidence of any of the rule's findings (the order first; the chart only when the
    order does not settle it), and the chart sources that could not be read."""
    evidence: list[Evidence] = []
    missing: list[str] = []
    for name in rule.requires:
        if name == COUGH_COLD:
            product = cough_cold_product(d, knowledge)
            evidence += [product] if product is not None else []
            continue
        in_order = found.in_order(d, name)
        evidence += in_order
        if any(e.certain for e in in_order):
            continue
        on_chart, not_read = found.on_chart(name)
        evidence += on_chart
        missing += not_read
    return evidence, missing


#: How the trace names the chart sources of ``Finding.chart``.
_SOURCES = {
    "procedures": "the patient's Procedures",
    "conditions": "the patient's Conditions",
    "observations": "the patient's status Observations",
}


def _not_found(rule: LabelRule, missing: list[str], knowledge: Knowledge) -> str:
    """'no obesity, obstructive sleep apnoea or severe lung disease in the order's reasons or
    the patient's Conditions', and which sources could not be read."""
    labels = [_label(n, knowledge) for n in rule.requires]
    named = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]
    findings = knowledge.label_rule_file.findings
    kinds = sorted({k for n in rule.requires if n in findings for k in findings[n].chart})
    looked = ["the order's reasons"] + [_SOURCES[k] for k in kinds if k not in missing]
    said = f"no {named} in " + (
        looked[0] if len(looked) == 1 else ", ".join(looked[:-1]) + " or " + looked[-1]
    )
    not_read = [_SOURCES[k] for k in kinds if k in missing]
    if not_read:
        said += f"; not checked in {', '.join(not_read)}: not read"
    return said


def _label(name: str, knowledge: Knowledge) -> str:
    if name == COUGH_COLD:
        return "cough and cold medicine"
    return matchers(knowledge)[name].finding.label


def _unique(texts: Any) -> list[str]:
    out: list[str] = []
    for t in texts:
        if t not in out:
            out.append(t)
    return out[:4]


def pretest(
    drugs: list[IdentifiedDrug],
    facts: dict[str, GeneResult],
    knowledge: Knowledge,
    switched_on: frozenset[str],
    trace: Trace,
) -> list[Notice]:
    """Pre-test cards for the ordered drugs ``switched_on`` (``SiteConfig.pretest_drugs``)
    that have no result on file for their test."""
    out = []
    for d in drugs:
        pre = knowledge.pretest.drugs.get(d.drug)
        if pre is None or d.drug not in switched_on:
            continue
        if pre.test in facts:
            continue  # a result is on file; an unclear one gets its card in unclear_results
        test = knowledge.pretest.tests[pre.test]
        trace.add("pretest", f"{d.drug}: no {pre.test} result on file: pre-test card")
        out.append(
            Notice(
                f"{d.drug}-pretest-{pre.test}",
                d,
                "info",
                pre.summary,
                pre.text,
                pre.source,
                (test.display, test.loinc),
            )
        )
    return out
