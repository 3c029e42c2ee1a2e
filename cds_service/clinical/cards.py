"""CDS Hooks cards from matched recommendations.

The indicator comes from the guideline's action and strength (``severity``; a row may name
its own where the action's default does not fit, as CPIC's cautious continuation of
carbamazepine after more than 3 months); a card whose results disagree is at least a
``warning``. Where the guideline says avoid or choose an alternative and names alternatives,
the card
offers suggestions that replace the draft order (delete it, create a new draft in the same
FHIR version); where it gives a dose, one at that dose; a pre-test card offers the test.
Every card with suggestions says ``selectionBehavior: at-most-one`` (CDS Hooks 2.0.1 requires
it with suggestions); a card without suggestions has neither.

Where the results leave the advice open between readings (results that disagree; a genotype
and the phenotype an interacting drug gives), the card follows the most severe reading and
says what is uncertain: the results behind it and what each reading would advise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.ids import card_uuid
from ..core.ids import uuid4 as new_uuid
from ..core.trace import Trace
from ..core.wording import code_span, escaped, inert, number, with_article
from ..core.wording import summary as short_summary
from ..fhir.hook_context import DraftOrder
from ..genomics.gene_decision import GeneResult
from ..knowledge.loader import Knowledge
from ..knowledge.models import Recommendation
from ..store.card_log import IssuedCard
from .label_rules import Notice
from .recommendations import Match, OtherAdvice, Reading, inhibitor_name, reading_words
from .severity import (
    LEVELS,
    advice,
    indicator,
    indicator_with_floor,
    most_severe,
    spanned_indicator,
)
from .suggestions import dose_suggestion, patient_reference, replacements

OVERRIDE_SYSTEM = "urn:pgx-pain-cds:override-reason"


@dataclass(frozen=True)
class BuiltCard:
    """A card: its CDS Hooks JSON (``body``, what the answer sends) and what the card log
    keeps of it (``issued``, never sent)."""

    body: dict[str, Any]
    issued: IssuedCard


TOPIC_SYSTEM = "urn:pgx-pain-cds:recommendation"
SOURCE_LABEL = "PGx Pain CDS"

OVERRIDE_REASONS = [
    ("benefit-outweighs-risk", "Benefit outweighs the risk for this patient"),
    ("tolerated-before", "Patient has taken this drug before without problems"),
    ("result-disputed", "Genetic result is wrong, outdated or not this patient's"),
    ("will-monitor", "Dose adjusted or patient will be monitored closely"),
    ("no-alternative", "No suitable alternative"),
]

__all__ = ["LEVELS", "build_cards", "indicator", "indicator_with_floor", "match_indicator"]

_STRENGTH = {
    "strong": "strong",
    "moderate": "moderate",
    "optional": "optional",
    "none": "none",
    "label": "label statement",
    "ungraded": "not graded",
}

#: Words from the request or the lab in a card's detail, at most (a line, not a page).
CARD_TEXT_LIMIT = 300


def match_indicator(m: Match, knowledge: Knowledge | None = None) -> str | None:
    """The card's indicator: the row's (with the impairment floor); a caution at a low
    tricyclic dose; for a result that spans rows with different advice, the most severe of
    them, at most ``warning`` (the result does not settle it). Results that disagree make
    any card at least a ``warning`` (verify before prescribing)."""
    if m.low_dose or m.within_target:
        level: str | None = "info"
    elif m.possible:
        level = spanned_indicator(m.possible)
    else:
        level = (
            indicator_with_floor(m.recommendation, knowledge)
            if knowledge
            else indicator(m.recommendation)
        )
    if level is not None and any(r.discordant for r in m.results):
        level = most_severe(level, "warning")
    return level


def build_cards(
    matches: list[Match],
    knowledge: Knowledge,
    notices: list[Notice] | None = None,
    trace: Trace | None = None,
) -> list[BuiltCard]:
    """One card per drug–gene–advice, however many orders it concerns: the card lists them
    (50,000 codeine orders must not make 50,000 cards). Orders whose dose changes the advice
    (a low tricyclic dose, a computed dose) get cards of their own."""
    cards = [notice_card(n) for n in notices or []]
    groups: dict[tuple[Any, ...], list[Match]] = {}
    for m in matches:
        level = match_indicator(m, knowledge)
        if level is None:
            continue
        key = (
            m.recommendation.id,
            level,
            m.low_dose,
            m.within_target,
            m.dose_text,
            len(m.possible),
        )
        groups.setdefault(key, []).append(m)
    for (_, level, *_rest), group in groups.items():
        orders: list[DraftOrder] = []
        seen: set[str | int] = set()
        for m in group:
            seen_key = m.drug.order.reference or id(m.drug.order)
            if seen_key not in seen:
                seen.add(seen_key)
                orders.append(m.drug.order)
        cards.append(build_card(group[0], level, knowledge, orders=orders, trace=trace))
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(cards, key=lambda c: order[c.body["indicator"]])


def build_card(
    m: Match,
    level: str,
    knowledge: Knowledge,
    orders: list[DraftOrder] | None = None,
    trace: Trace | None = None,
) -> BuiltCard:
    """The card for ``m``; ``orders`` (default: ``m``'s own) are all the orders it concerns."""
    orders = orders or [m.drug.order]
    rec = m.recommendation
    guideline = rec.guideline
    assert guideline is not None
    genes = "/".join(rec.genes)
    card: dict[str, Any] = {
        "uuid": card_uuid(),
        "summary": short_summary(
            f"{rec.drug.capitalize()} at a low dose: use with caution ({_who_all(m)})"
        )
        if m.low_dose
        else short_summary(
            f"{rec.drug.capitalize()} dose within the guideline's adjusted dose: {_who_all(m)}"
        )
        if m.within_target
        else summary(rec, m.results, bool(m.possible)),
        "indicator": level,
        "detail": detail(m, knowledge, orders),
        "source": {
            "label": f"{guideline.name}: {rec.drug} and {genes} ({SOURCE_LABEL})",
            "url": guideline.url,
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": rec.id,
                "display": f"{rec.drug.capitalize()} and {genes}",
            },
        },
        "links": [
            {
                "label": f"{guideline.organization} guideline: {rec.drug} and {genes}",
                "url": guideline.url,
                "type": "absolute",
            },
        ]
        + (
            [
                {
                    "label": f"Publication (PubMed {guideline.pmid})",
                    "url": f"https://pubmed.ncbi.nlm.nih.gov/{guideline.pmid}/",
                    "type": "absolute",
                }
            ]
            if guideline.pmid
            else []
        ),
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
            for code, display in OVERRIDE_REASONS
        ],
    }
    notes: list[str] = []
    if (
        rec.action == "adjust-dose"
        and m.dose_target
        and not m.within_target
        and len(orders) == 1
        and orders[0].reference
    ):
        found, why = dose_suggestion(m, knowledge)
        if found:
            _offer(card, [found])
        else:
            notes.append(f"No one-click dose: {why}. Set the dose by hand.")
    # Replace only orders we can name: a create without a delete would leave both.
    if (
        rec.action in ("avoid", "alternative")
        and not m.possible
        and not m.low_dose
        and all(o.is_medication_order and o.reference for o in orders)
    ):
        suggestions, not_offered = replacements(m, knowledge, orders)
        notes += not_offered
        if suggestions:
            _offer(card, suggestions)
    if notes:
        card["detail"] += "\n\n**One-click suggestions:** " + " ".join(
            escaped(n if n.endswith(".") else n + ".") for n in notes
        )
    if trace is not None:  # what `pgx-cds explain` shows
        for offered in card.get("suggestions", []):
            trace.add("suggestions", f"{rec.drug}: offered '{offered['label']}'")
        for note in notes:
            trace.add("suggestions", f"{rec.drug}: {note}")
    return BuiltCard(
        card,
        IssuedCard(
            uuid=card["uuid"],
            drug=rec.drug,
            genes=genes,
            phenotype="; ".join(f"{r.gene} {r.phenotype}" for r in m.results),
            recommendation_id=rec.id,
            indicator=level,
            order_reference=m.drug.order.reference,
        ),
    )


def _offer(card: dict[str, Any], suggestions: list[dict[str, Any]]) -> None:
    """Put ``suggestions`` on ``card``. CDS Hooks 2.0.1: "If suggestions are present,
    selectionBehavior MUST also be provided"; ours are alternatives to one another (replace
    the order with this drug, or that one, or at this dose), so at most one is taken."""
    card["suggestions"] = suggestions
    card["selectionBehavior"] = "at-most-one"


def _who(r: GeneResult) -> str:
    if r.genetic_phenotype:
        return f"{r.gene} {r.phenotype.lower()} while taking {inhibitor_name(r)}"
    if r.phenoconverted_by:
        return f"{r.gene} {r.phenotype.lower()} by genotype (taking {inhibitor_name(r)})"
    return f"{r.gene} {r.phenotype.lower()}"


def summary(rec: Recommendation, results: tuple[GeneResult, ...], spans: bool = False) -> str:
    discordant = [r for r in results if r.discordant]
    if discordant:
        r = discordant[0]
        words = "advice depends on the activity score" if spans else advice(rec).lower()
        reading = r.phenotype.lower() + (
            f" while taking {inhibitor_name(r)}" if r.genetic_phenotype else ""
        )
        return short_summary(
            f"{r.gene} results disagree — verify before prescribing {rec.drug} "
            f"(if {reading}: {words})"
        )
    who = " and ".join(_who(r) for r in results)
    if spans:
        text = f"{rec.drug.capitalize()}: advice depends on the activity score ({who}, no score)"
        return short_summary(text)
    verb = {
        "avoid": "Avoid {drug}",
        "alternative": "Consider an alternative to {drug}",
        "adjust-dose": "Adjust {drug} dose",
        "caution": "{Drug}: reduced or uncertain response possible",
    }[rec.action]
    if rec.summary:
        verb = rec.summary
    text = verb.format(drug=rec.drug, Drug=rec.drug.capitalize()) + f": {who}"
    return short_summary(text)


def detail(m: Match, knowledge: Knowledge, orders: list[DraftOrder] | None = None) -> str:
    rec = m.recommendation
    guideline = rec.guideline
    assert guideline is not None
    strength = _STRENGTH[rec.strength]
    lines = _uncertain(m, knowledge)
    if m.possible:
        genes = escaped("/".join(rec.genes))
        lines += [
            f"**The result does not settle the advice.** It stands for a range of {genes} "
            "activity scores, and the guideline advises differently within it:",
            "",
        ]
        for row in m.possible:
            when = "; ".join(c.describe() for c in row.when.values())
            lines.append(
                f"- **If {escaped(when)}:** {escaped(row.recommendation)} "
                f"({escaped(guideline.organization)}, {_STRENGTH[row.strength]})"
            )
        lines += [
            "",
            f"**What decides:** the {genes} genotype (diplotype) or the activity score the lab "
            "reported; check the full report or order genotyping.",
            "",
            "**Patient result**",
            "",
        ]
    else:
        lines += [
            f"**Recommendation** ({_grading(rec, strength)}): {escaped(rec.recommendation)}",
            "",
            f"**Why:** {escaped(rec.implication)}",
            "",
            *_differently(m, knowledge),
            "**Patient result**",
            "",
        ]
    for r in m.results:
        parts = [escaped(r.gene)]
        if r.diplotype:
            parts.append(code_span(r.diplotype))  # a star is Markdown
        if r.activity_score_text is not None:
            parts.append(f"activity score {inert(r.activity_score_text)}")
        parts.append(f"**{escaped(r.phenotype)}**")
        line = "- " + ", ".join(parts)
        when = f" of {inert(r.date_text, CARD_TEXT_LIMIT)}" if r.date_text else ""
        line += f" ({r.kind} result{when})"
        lines.append(line)
        lines.extend(f"  - Note: {inert(note, CARD_TEXT_LIMIT)}" for note in r.notes)
    lines += _by_genotype(m)
    if m.history_text:
        lines += ["", f"**Medication history:** {inert(m.history_text, CARD_TEXT_LIMIT)}"]
    ordered = inert(m.drug.medication_text or m.drug.drug, CARD_TEXT_LIMIT)
    if m.dose_text:
        lines += ["", f"**Dose:** {escaped(m.dose_text)}"]
    for r in m.results:
        for statement in knowledge.label_statements_for(rec.drug, r.gene, r.phenotype):
            lines += ["", f"**Also:** {escaped(statement.text)}"]
    pmid = f" PMID {guideline.pmid}." if guideline.pmid else ""
    lines += [
        "",
        f"**Order:** {ordered} (identified by {inert(m.drug.matched_by, CARD_TEXT_LIMIT)})",
        "",
    ]
    if orders and len(orders) > 1:
        named = ", ".join(inert(o.reference or "an order without id") for o in orders)
        lines += [f"**Applies to {len(orders)} draft orders:** {named}", ""]
    lines += [
        f"**Source:** {escaped(guideline.citation)}, {escaped(rec.table)}.{pmid} "
        f"[Guideline]({guideline.url}). Knowledge version {knowledge.version}.",
    ]
    return "\n".join(lines)


def _grading(rec: Recommendation, strength: str) -> str:
    """'CPIC, strong'; for a DPWG row, which grades nothing, its classification of genotyping
    for the pair where confirmed: 'DPWG, not graded; genotyping before codeine: beneficial'."""
    org = escaped(rec.guideline.organization if rec.guideline else "guideline")
    if rec.classification and rec.classification != "not confirmed":
        return f"{org}, {strength}; genotyping before {rec.drug}: {rec.classification}"
    return f"{org}, {strength}"


def differs(m: Match, other: OtherAdvice, knowledge: Knowledge) -> bool:
    """Does another of the site's guideline sets advise differently for this card's result:
    another action, another dose change, no advice where this card advises, or advice that
    depends on the activity score?"""
    mine, theirs = m.recommendation, other.recommendation
    if theirs is None or other.spans:
        return True
    if theirs.action != mine.action or (theirs.dose_limit is None) != (mine.dose_limit is None):
        return True
    changes = knowledge.dosing.dose_changes
    return changes.get(theirs.id) != changes.get(mine.id)


def _differently(m: Match, knowledge: Knowledge) -> list[str]:
    """One line per other guideline set of the site that advises differently."""
    lines = []
    for other in m.other_advice:
        if not differs(m, other, knowledge):
            continue
        rec = other.recommendation
        if other.spans:
            words = "its advice depends on the activity score, which this result does not give."
        elif rec is None or rec.action == "no-recommendation":
            words = f"{other.note or 'no recommendation for this result'}."
        else:
            graded = _grading(rec, _STRENGTH[rec.strength])
            words = (
                f"{escaped(advice(rec).lower())}{_dose_words(rec, knowledge)}{_limit_words(rec)} "
                f"({graded})."
            )
        lines += [f"**{escaped(other.guideline)} advises differently:** {words}", ""]
    return lines


def _limit_words(rec: Recommendation) -> str:
    """', above 20 mg every 6 hours (10 mg aged 12 to 18)' for advice above a dose limit."""
    if rec.dose_limit is None:
        return ""
    limits = sorted(rec.dose_limit.limits, key=lambda lim: -lim.min_age_years)
    every = f"every {number(rec.dose_limit.per_hours)} hours"
    first, *rest = limits
    ages = [
        f"{number(lim.mg)} mg aged {number(lim.min_age_years)}"
        + (f" to {number(lim.max_age_years)}" if lim.max_age_years is not None else " or over")
        for lim in rest
    ]
    return f", above {number(first.mg)} mg {every}" + (f" ({'; '.join(ages)})" if ages else "")


def _dose_words(rec: Recommendation, knowledge: Knowledge) -> str:
    change = knowledge.dosing.dose_changes.get(rec.id)
    if change is None or rec.action != "adjust-dose":
        return ""
    low, high = round(change.low * 100), round(change.high * 100)
    pct = f"{low}%" if low == high else f"{low}–{high}%"
    base = "the ordered dose" if change.basis == "ordered" else "the lowest starting dose"
    return f", {pct} of {base}"


def _uncertain(m: Match, knowledge: Knowledge) -> list[str]:
    """What the results leave open, before the advice: results that disagree (each result
    and what each reading advises), or an interacting drug the advice must not rely on."""
    lines: list[str] = []
    for r in m.results:
        if r.discordant:
            lines += _discordance(r, m, knowledge)
            break
    for r in m.results:
        if r.phenoconverted_by and not r.genetic_phenotype:
            lines += _not_relied_on(r, m)
    return lines


def _discordance(r: GeneResult, m: Match, knowledge: Knowledge) -> list[str]:
    gene = escaped(r.gene)
    lines = [
        f"**{gene} results disagree — verify before prescribing.** No change of CPIC's "
        f"rules explains the difference; {_possible_causes(r.gene)}, can. Until the results "
        "are reconciled (confirm with the lab or repeat the test), this card follows the "
        "riskier reading.",
        "",
        f"**{gene} results on file**",
        "",
    ]
    for reported in r.disagreeing:
        read = reported.phenotype.lower()
        if reported.activity_score_text:
            read += f", activity score {inert(reported.activity_score_text)}"
        when = inert(reported.date_text) if reported.date_text else "undated"
        lab = f", {inert(reported.performer, CARD_TEXT_LIMIT)}" if reported.performer else ""
        lines.append(f"- {reported.kind} {_value(reported.value)} (read as {read}), {when}{lab}")
    lines += ["", "**Advice by reading**", ""]
    chosen = "; ".join(reading_words(x) for x in m.results)
    lines.append(f"- **If {escaped(chosen)}** (this card): {_advice_text(m.recommendation)}")
    for other in m.alternatives:
        lines.append(f"- **If {escaped(_reading_words(other, m))}:** {_reading_advice(other)}")
    lines.append("")
    return lines


def _possible_causes(gene: str) -> str:
    if "*" in gene:  # an HLA allele
        return "a typing that could not tell the allele apart, or a sample mix-up"
    return "a test that could not detect a gene deletion, duplication or hybrid, or a sample mix-up"


def _not_relied_on(r: GeneResult, m: Match) -> list[str]:
    """The genotype's reading followed while the patient takes an inhibitor (an
    ultrarapid metabolizer on duloxetine or paroxetine): the inhibitor may lower activity,
    but the advice must not rely on it."""
    use = escaped(r.phenoconverted_by[0])
    if r.functional_phenotype:
        functional = next(
            (
                a
                for a in m.alternatives
                if any(x.genetic_phenotype and x.gene == r.gene for x in a.results)
            ),
            None,
        )
        effect = (
            f"by the usual convention to that of {with_article(r.functional_phenotype.lower())}"
        )
        if functional is not None:
            effect += f", which alone would mean: {_reading_words_advice(functional)}"
    else:
        effect = "by how much, this result cannot tell"
    returns = (
        "the ultrarapid metabolizer's risk of toxicity returns"
        if r.phenotype == "Ultrarapid Metabolizer"
        else "the advice by genotype applies again"
    )
    return [
        f"**{escaped(r.gene)} {r.phenotype.lower()} by genotype, for life.** The patient takes "
        f"{use}: it may lower {escaped(r.gene)} activity ({effect}), but do not rely on it. "
        "Inhibition varies from person to person and ends when doses are missed or the drug "
        f"is stopped, and then {returns}. This card follows the genotype.",
        "",
    ]


def _by_genotype(m: Match) -> list[str]:
    """For a card that follows an interacting drug's phenotype: what the genotype alone
    would advise."""
    if not any(r.genetic_phenotype for r in m.results):
        return []
    genetic = [
        a
        for a in m.alternatives
        if not any(x.genetic_phenotype for x in a.results)
        and not any(x.discordant for x in a.results)
    ]
    if not genetic or genetic[0].level is None:
        return ["  - By genotype alone this order would not alert: the interaction does."]
    return [f"  - By genotype alone: {_reading_advice(genetic[0])}"]


def _reading_words(reading: Reading, m: Match) -> str:
    """The genes in which a reading differs from the card's (all of them if none does)."""
    differing = [x for x in reading.results if x not in m.results]
    return "; ".join(reading_words(x) for x in differing or reading.results)


def _reading_words_advice(reading: Reading) -> str:
    """A reading's advice in a few words (``label dosing``, ``avoid``)."""
    if reading.possible:
        return "advice depends on the activity score"
    row = reading.recommendation
    return escaped(advice(row).lower()) if row is not None else "no genotype-based advice"


def _reading_advice(reading: Reading) -> str:
    if reading.recommendation is None or reading.level is None:
        row = reading.recommendation
        words = escaped(advice(row).lower()) if row is not None else "no genotype-based advice"
        return f"no card ({words})."
    if reading.possible:
        return "advice depends on the activity score."
    return _advice_text(reading.recommendation)


def _advice_text(rec: Recommendation) -> str:
    org = rec.guideline.organization if rec.guideline else "guideline"
    return f"{escaped(advice(rec))} ({escaped(org)}, {_STRENGTH[rec.strength]})."


def _value(text: str) -> str:
    """A lab's value in a card: code for a diplotype (its stars), else escaped words."""
    if "*" in text and " " not in text.strip():
        return code_span(text, limit=CARD_TEXT_LIMIT)
    return f"'{inert(text, CARD_TEXT_LIMIT)}'"


def _who_all(m: Match) -> str:
    return " and ".join(_who(r) for r in m.results)


def notice_card(n: Notice) -> BuiltCard:
    """A card for a label rule, a missing test or an unclear result."""
    ordered = inert(n.drug.medication_text or n.drug.drug, CARD_TEXT_LIMIT)
    lines = [escaped(n.text)]
    if n.result:
        lines.append(f"**Result on file:** {_unclear_result(n.result)}")
    if n.facts:  # (from the request: inert)
        lines.append("**This patient:** " + "; ".join(inert(f, CARD_TEXT_LIMIT) for f in n.facts))
    if n.uncertain:
        lines.append(
            "**Not certain, please confirm:** "
            + "; ".join(inert(u, CARD_TEXT_LIMIT) for u in n.uncertain)
            + ". The card follows the more cautious reading."
        )
    source = n.source
    when = f" ({source.date})" if source.date else ""
    where = f" {escaped(source.section)}." if source.section else ""
    pmid = f" PMID {source.pmid}." if source.pmid else ""
    lines += [
        f"**Order:** {ordered}",
        f"**Source:** {escaped(source.title)}{when}.{where}{pmid} [Source]({source.url}).",
    ]
    card: dict[str, Any] = {
        "uuid": card_uuid(),
        "summary": short_summary(n.summary),
        "indicator": n.indicator,
        "detail": "\n\n".join(lines),
        "source": {
            "label": f"{n.source.organization} {n.source.year} ({SOURCE_LABEL})",
            "url": n.source.url,
            "topic": {"system": TOPIC_SYSTEM, "code": n.id, "display": n.summary[:100]},
        },
        "links": [{"label": n.source.title[:120], "url": n.source.url, "type": "absolute"}],
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
            for code, display in OVERRIDE_REASONS
        ],
    }
    if n.test is not None:
        display, loinc = n.test
        request: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "order",
            "code": {"text": display},
        }
        if loinc:
            request["code"]["coding"] = [
                {"system": "http://loinc.org", "code": loinc, "display": display}
            ]
        resource = n.drug.order.resource
        if subject := patient_reference(resource.get("subject") or resource.get("patient")):
            request["subject"] = subject
        _offer(
            card,
            [
                {
                    "label": f"Order {display}",
                    "uuid": new_uuid(),
                    "actions": [
                        {"type": "create", "description": f"Order {display}", "resource": request}
                    ],
                }
            ],
        )
    return BuiltCard(
        card,
        IssuedCard(
            uuid=card["uuid"],
            drug=n.drug.drug,
            genes=n.result.gene if n.result else n.test[0] if n.test else "-",
            phenotype="unclear" if n.result else "untested" if n.test else n.basis,
            recommendation_id=n.id,
            indicator=n.indicator,
            order_reference=n.drug.order.reference,
        ),
    )


def _unclear_result(r: GeneResult) -> str:
    """The unclear result a notice is about: gene, typing, date, and why it settles nothing."""
    parts = [escaped(r.gene)]
    if r.diplotype:
        parts.append(code_span(r.diplotype))
    when = f" of {inert(r.date_text, CARD_TEXT_LIMIT)}" if r.date_text else ""
    text = ", ".join(parts) + f" ({r.kind} result{when}): not settled"
    if r.notes:
        text += f": {inert(r.notes[0], CARD_TEXT_LIMIT)}"
    return text
