"""What the order and the patient add to the guideline row: the ordered dose, the patient's
age (FDA label rules) and a missing test (pre-test cards).

* **Dose.** CPIC's tricyclic dose advice is written for depression doses; an order at or
  below the low-dose limit in ``knowledge/rules/dosing.json`` (neuropathic-pain doses) gets a
  caution card instead of "avoid". Where CPIC gives a dose change, the card computes it for
  the ordered drug and strength.
* **Age.** Codeine and tramadol are contraindicated under 12, and under 18 after
  tonsillectomy or adenoidectomy (FDA 2017), whatever the genotype.
* **Pre-test.** Carbamazepine or oxcarbazepine ordered with no HLA-B*15:02 result on file:
  an info card suggesting the test (on by default); others switched on per site.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..core.trace import Trace
from ..core.wording import number
from ..genomics.gene_decision import GeneResult
from ..knowledge.loader import Knowledge
from ..knowledge.models import RuleSource
from .medications import IdentifiedDrug
from .order_details import age_range, order_dose, reason_texts
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


def with_genetic_alert(m: Match, alerts: bool) -> Match:
    return replace(m, genetic_alerts=alerts)


def with_dose(m: Match, knowledge: Knowledge, trace: Trace) -> Match:
    """The order's dose against the row's dose advice (see the module's notes)."""
    drug = m.drug.drug
    dosing = knowledge.dosing.drugs.get(drug)
    change = knowledge.dosing.dose_changes.get(m.recommendation.id)
    if dosing is None or m.possible:
        return m
    dose = order_dose(m.drug.order.resource, m.drug.medication_text, drug)
    per_day = dose.mg_per_day
    ordered = f"ordered {drug} {dose.describe()}"
    most = dose.max_mg_per_day  # a low dose only if the order never allows more
    if (
        dosing.low_dose_max_mg_per_day is not None
        and most is not None
        and most <= dosing.low_dose_max_mg_per_day
        and m.recommendation.action in ("avoid", "alternative", "adjust-dose")
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
    if change.basis == "ordered":
        base, what = per_day, "the ordered daily dose"
    else:
        base, what = dosing.lowest_start_mg_per_day, "the lowest starting dose"
        what += f" ({number(base)} mg/day)" if base is not None else ""
    if base is None:
        trace.add("dose", f"{drug}: ordered dose not stated in mg and frequency: not computed")
        return replace(m, dose_text=f"{ordered}.")
    low, high = base * change.low, base * change.high
    target = f"{number(low)} mg/day" if low == high else f"{number(low)}–{number(high)} mg/day"
    pct = (
        f"{round(change.low * 100)}%"
        if change.low == change.high
        else f"{round(change.low * 100)}–{round(change.high * 100)}%"
    )
    trace.add("dose", f"{drug}: {dose.describe()}; guideline dose {target}")
    guideline = m.recommendation.guideline
    who = guideline.organization if guideline else "guideline"
    return replace(
        m,
        dose_text=f"{ordered}; {who}: start at {pct} of {what}, about {target}.",
        dose_target=(low, high),
    )


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


def age_rules(
    drugs: list[IdentifiedDrug],
    patient: dict[str, Any] | None,
    knowledge: Knowledge,
    trace: Trace,
) -> list[Notice]:
    ages = age_range(patient)
    if patient is not None and ages is None:
        trace.add("age", "the patient's birth date is missing or unreadable: age rules not applied")
    if ages is None:
        return []
    youngest, oldest = ages
    out = []
    for d in drugs:
        reasons: str | None = None  # read once a rule needs them
        for rule in knowledge.label_rules:
            if rule.drug != d.drug or youngest >= rule.max_age_years:
                continue
            if rule.reason_words:
                if reasons is None:
                    reasons = " ".join(reason_texts(d.order.resource)).lower()
                if not any(w.lower() in reasons for w in rule.reason_words):
                    continue
            if oldest >= rule.max_age_years:  # a partial birth date on both sides of the limit
                trace.add(
                    "age",
                    f"{d.drug}: {rule.id} not applied: the birth date is partial and the patient "
                    f"may be {youngest} or {oldest} years old (limit {rule.max_age_years:g})",
                )
                continue
            trace.add("age", f"{d.drug}: {rule.id} applies (age under {rule.max_age_years:g})")
            out.append(Notice(rule.id, d, rule.indicator, rule.summary, rule.text, rule.source))
    return out


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
