"""Patient view: the patient's pharmacogenomic profile for pain care, when the chart opens.

``patient-view`` has no orders. Every drug the knowledge covers is judged as a virtual order
through the prescribing hooks' own stages: the same genomic facts, phenoconversion
(``interactions.phenoconvert``: the genotype and the converted phenotype are both judged),
guideline rows (``recommendations.match``: reading by reading, the most severe followed),
card indicator (``cards.match_indicator``), FDA age rules and pre-test rules
(``label_rules``, with the patient's birth date), unclear results (``unclear_results``) and
the site's policy. A drug is listed as
affected exactly when ordering it would give a card, with that card's advice, so the summary
never contradicts a prescribing card. Nothing here is a second copy of a rule.

One ``info`` card when the patient has a usable result for a gene the guidelines use: the
summary names the genes that change advice ("PGx for pain: CYP2D6 poor metabolizer, CYP2C9
poor metabolizer (AS 0) — 13 pain drugs affected"), the label rules for the patient's age,
or says that nothing changes; the detail is a small table per such gene (result, the drugs
it affects with the advice, the drugs whose advice is unchanged, phenoconversion with the
genotype beside it, results that disagree, re-interpretation), the genes that change nothing
on one line, the rules that apply whatever the genotype (age, tests to order first), and the
drugs the site does not show yet. No result on file: no card, unless the site switches on
the "no PGx results on file" card (``PGX_CDS_PATIENT_VIEW_NO_RESULTS_CARD``). Only
indeterminate results: no card, unless one gives a drug its own card (an HLA typing that
cannot exclude HLA-B*15:02: ``unclear_results``), listed as that card says it.

The site's policy: a drug ``off`` for the site is not listed at all; a ``silent`` one (its
prescribing card is logged, not shown) is not given advice here either, and is named on one
line, "Not shown at this site", so that its absence is never read as "no change in advice".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.ids import card_uuid
from ..core.trace import Trace
from ..core.wording import SUMMARY_LIMIT, inert
from ..fhir.hook_context import DraftOrder
from ..genomics.gene_decision import GeneResult
from ..knowledge.loader import Knowledge
from ..knowledge.models import Guideline
from . import interactions, recommendations, unclear_results
from .cards import SOURCE_LABEL, TOPIC_SYSTEM, match_indicator
from .label_rules import Notice
from .medication_history import Therapy
from .medications import IdentifiedDrug
from .patient_view_detail import DrugAdvice, Shown, causes, detail, notice_lines
from .recommendations import Match, inhibitor_name
from .severity import LEVELS

#: The site's policy for one would-be card: (drug, genes, topic id, indicator) -> (mode,
#: indicator): mode "on", "silent" or "off" (``governance.site_config``).
Policy = Callable[[str, tuple[str, ...], str, str | None], tuple[str, str | None]]

SUMMARY_TOPIC = "patient-view-summary"
NO_RESULTS_TOPIC = "patient-view-no-results"
VIRTUAL = "patient view (every covered drug, as if ordered)"
MAX_SUMMARY = SUMMARY_LIMIT - 1  # under 140 characters

_LEVELS = LEVELS
_SHORT = {
    "Poor Metabolizer": "PM",
    "Intermediate Metabolizer": "IM",
    "Normal Metabolizer": "NM",
    "Rapid Metabolizer": "RM",
    "Ultrarapid Metabolizer": "UM",
}


@dataclass(frozen=True)
class Decided:
    """What the summary card was built from, for a reader of the same decisions (the
    patient's summary page, ``cds_service.summary``): the results as on file, as they act
    (phenoconversion), and the advice and rules the card shows once the site's policy applies."""

    facts: dict[str, GeneResult]
    acting: dict[str, GeneResult]
    shown: Shown


def virtual_orders(knowledge: Knowledge) -> list[IdentifiedDrug]:
    """Every covered drug as an order with no id (nothing to replace, no dose)."""
    return [
        IdentifiedDrug(
            drug,
            DraftOrder({"resourceType": "MedicationRequest", "status": "draft"}),
            VIRTUAL,
            drug,
        )
        for drug in sorted(knowledge.covered_drugs)
    ]


def functional_facts(
    facts: dict[str, GeneResult],
    inhibitors: dict[str, list[interactions.InhibitorUse]],
    knowledge: Knowledge,
    trace: Trace,
) -> dict[str, GeneResult]:
    """The results as they act while the patient takes ``inhibitors`` (per gene, as
    ``interactions.find_all`` gives them): phenoconversion."""
    out = dict(facts)
    for gene, found in inhibitors.items():
        if gene in out and found:
            out[gene] = interactions.phenoconvert(out[gene], found, knowledge, trace)
    return out


def drug_advice(
    facts: dict[str, GeneResult],
    knowledge: Knowledge,
    trace: Trace,
    therapies: dict[str, Therapy] | None = None,
) -> dict[str, DrugAdvice]:
    """Per covered drug, the advice its prescribing card would give from ``facts`` (drugs
    without a usable result for their genes are left out: they would get no card). A result
    with several readings (results that disagree, phenoconversion) is matched reading by
    reading, as for an order: the most severe advice, with the others beside it."""
    drugs = virtual_orders(knowledge)
    return _most_severe(recommendations.match(drugs, facts, knowledge, trace, therapies), knowledge)


def _unclear(
    facts: dict[str, GeneResult],
    advice: dict[str, DrugAdvice],
    knowledge: Knowledge,
    pretest_drugs: frozenset[str] | None,
    trace: Trace,
) -> list[Notice]:
    """The cards an unclear result gives each covered drug (``unclear_results``, as for an
    order: an HLA typing that cannot exclude HLA-B*15:02 for carbamazepine)."""
    if pretest_drugs is None:
        return []
    matched = [a.match for a in advice.values()]
    return unclear_results.notices(
        virtual_orders(knowledge), facts, matched, knowledge, pretest_drugs, trace
    )


def _most_severe(matches: list[Match], knowledge: Knowledge) -> dict[str, DrugAdvice]:
    out: dict[str, DrugAdvice] = {}
    for m in matches:
        level = match_indicator(m, knowledge)
        known = out.get(m.drug.drug)
        if known is None or _LEVELS[level] > _LEVELS[known.level]:
            out[m.drug.drug] = DrugAdvice(m.drug.drug, m, level)
    return out


def site_policy(
    advice: dict[str, DrugAdvice], notices: list[Notice], policy: Policy | None, trace: Trace
) -> Shown:
    """The site's policy, as for the prescribing cards: ``off`` drops the drug's advice,
    ``silent`` keeps it from the card (the drug is named as not shown), an indicator the
    site sets replaces the row's."""
    if policy is None:
        return Shown(advice, notices)
    shown: dict[str, DrugAdvice] = {}
    silent: set[str] = set()
    silent_affected: list[DrugAdvice] = []
    for drug, a in advice.items():
        rec = a.match.recommendation
        mode, level = policy(drug, rec.genes, rec.id, a.level)
        if mode == "on":
            shown[drug] = DrugAdvice(drug, a.match, level if a.affected else None)
            continue
        trace.add("site", f"patient view: {drug} ({rec.id}) is {mode} by site configuration")
        if mode == "silent":
            silent.add(drug)
            if a.affected:
                silent_affected.append(a)
    kept: list[Notice] = []
    for n in notices:
        genes = (n.test[0],) if n.test else ()
        mode, level = policy(n.drug.drug, genes, n.id, n.indicator)
        if mode == "on":
            kept.append(n)
            continue
        trace.add("site", f"patient view: {n.id} is {mode} by site configuration")
        if mode == "silent":
            silent.add(n.drug.drug)
    return Shown(shown, kept, sorted(silent), silent_affected)


def build_cards(
    facts: dict[str, GeneResult],
    inhibitors: dict[str, list[interactions.InhibitorUse]],
    knowledge: Knowledge,
    trace: Trace,
    *,
    notices: list[Notice] | None = None,
    policy: Policy | None = None,
    pretest_drugs: frozenset[str] | None = None,
    no_results_card: bool = False,
    therapies: dict[str, Therapy] | None = None,
    decided: Callable[[Decided], None] | None = None,
) -> list[dict[str, Any]]:
    """The patient-view cards: one summary card, or none (see the module's notes).
    ``notices``: the label and pre-test rules for every covered drug (as if ordered);
    ``policy``: the site's (None: every card shown); ``pretest_drugs``: the drugs with
    pre-test cards (given: unclear results get their cards too, as for an order);
    ``decided``: told what the summary card is built from (not called without one)."""
    notices = notices or []
    if not facts:
        trace.add("patient view", "no pharmacogenomic results on file")
        if not no_results_card:
            return []
        return [no_results(knowledge, site_policy({}, notices, policy, trace).notices)]
    acting = functional_facts(facts, inhibitors, knowledge, trace)
    advice = drug_advice(acting, knowledge, trace, therapies)
    unclear = _unclear(facts, advice, knowledge, pretest_drugs, trace)
    usable = any(f.actionable and f.gene in knowledge.covered_genes for f in facts.values())
    if not usable and not unclear:
        trace.add("patient view", "no usable result for a gene the guidelines use: no card")
        if decided is not None:  # (the patient's summary page still lists the results)
            decided(Decided(facts, acting, site_policy(advice, notices, policy, Trace())))
        return []
    shown = site_policy(advice, notices + unclear, policy, trace)
    affected = [a for a in shown.advice.values() if a.affected]
    trace.add(
        "patient view",
        f"{len(affected)} covered drug(s) would get a card"
        + "".join(f"; {a.drug} ({a.level})" for a in affected)
        + "".join(f"; {n.drug.drug} ({n.indicator}: {n.id})" for n in shown.notices),
    )
    if decided is not None:
        decided(Decided(facts, acting, shown))
    return [summary_card(acting, shown, knowledge)]


def summary_card(
    facts: dict[str, GeneResult], shown: Shown | dict[str, DrugAdvice], knowledge: Knowledge
) -> dict[str, Any]:
    if not isinstance(shown, Shown):
        shown = Shown(shown)
    advice = shown.advice
    per_gene: dict[str, list[DrugAdvice]] = {g: [] for g in facts}
    for a in advice.values():
        for gene in causes(a):
            per_gene.setdefault(gene, []).append(a)
    changing = [g for g, items in per_gene.items() if any(a.affected for a in items)]
    changing.sort(
        key=lambda g: (
            -max(_LEVELS[a.level] for a in per_gene[g]),
            -sum(a.affected for a in per_gene[g]),
            g,
        )
    )
    hidden = {g for a in shown.silent_affected for g in causes(a)} - set(changing)
    affected = [a for a in advice.values() if a.affected]
    by_label = sorted({n.drug.drug for n in shown.notices if n.test is None or n.result})
    unchanged = [
        facts[g]
        for g in sorted(facts)
        if g not in changing and g not in hidden and facts[g].actionable
    ]
    count = len({a.drug for a in affected} | set(by_label))
    return {
        "uuid": card_uuid(),
        "summary": summary(
            [facts[g] for g in changing],
            unchanged,
            count,
            knowledge,
            label_rules=_label_words(shown.notices),
            unclear=_unclear_words(shown.notices),
            hidden=[facts[g] for g in sorted(hidden)],
        ),
        "indicator": "info",
        "detail": detail(facts, per_gene, changing, knowledge, shown, hidden),
        "source": {
            "label": f"CPIC guidelines ({SOURCE_LABEL})",
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": SUMMARY_TOPIC,
                "display": "Pharmacogenomic profile for pain care",
            },
        },
        "links": guideline_links(affected or list(advice.values())),
    }


def _label_words(notices: list[Notice]) -> str | None:
    """The label rules for the patient in a few words: ``codeine, tramadol contraindicated
    (FDA label)``; None when none applies."""
    rules = [n for n in notices if n.test is None]
    if not rules:
        return None
    drugs = sorted({n.drug.drug for n in rules})
    what = "contraindicated" if all(n.indicator == "critical" for n in rules) else "restricted"
    return f"{', '.join(drugs)} {what} (FDA label)"


def _unclear_words(notices: list[Notice]) -> str | None:
    """Results that leave a drug's allele open, in a few words: ``HLA-B*15:02 not
    excluded (result unclear)``; None when there is none."""
    markers = sorted({n.result.gene for n in notices if n.result is not None})
    return f"{', '.join(markers)} not excluded (result unclear)" if markers else None


def summary(
    changing: list[GeneResult],
    unchanged: list[GeneResult],
    drugs: int,
    knowledge: Knowledge,
    *,
    label_rules: str | None = None,
    unclear: str | None = None,
    hidden: list[GeneResult] | None = None,
) -> str:
    """``PGx for pain: CYP2D6 poor metabolizer, CYP2C9 poor metabolizer (AS 0) — 13 pain drugs
    affected`` (or ``PGx for pain, no change in advice: CYP2D6 normal metabolizer``), with
    the label rules for the patient's age first, shortened to fit the 140 characters CDS
    Hooks allows."""
    hidden = hidden or []
    rules = [words for words in (label_rules, unclear) if words]
    prefix = "".join(f"{words}; " for words in rules)
    if changing:
        head, named = f"PGx for pain: {prefix}", changing
        tail = f" — {drugs} pain drug{'s' if drugs != 1 else ''} affected"
    elif rules and not unchanged:
        return f"PGx for pain: {'; '.join(rules)}"[:MAX_SUMMARY]
    elif rules:
        head, named, tail = f"PGx for pain: {prefix}no change by genotype: ", unchanged, ""
    elif hidden:
        head, named = "PGx for pain: ", hidden + unchanged
        tail = " (advice for some drugs not shown at this site)"
    else:
        head, named, tail = "PGx for pain, no change in advice: ", unchanged, ""
    if not named:
        return (head.rstrip(": ;") + tail)[:MAX_SUMMARY]
    for short in (False, True):
        text = head + ", ".join(_who(f, knowledge, short) for f in named) + tail
        if len(text) <= MAX_SUMMARY:
            return text
    for keep in range(len(named) - 1, 0, -1):
        names = ", ".join(_who(f, knowledge, True) for f in named[:keep])
        text = f"{head}{names} +{len(named) - keep} more{tail}"
        if len(text) <= MAX_SUMMARY:
            return text
    return (head + named[0].gene + tail)[:MAX_SUMMARY]


def _who(fact: GeneResult, knowledge: Knowledge, short: bool) -> str:
    def words(phenotype: str) -> str:
        return _SHORT.get(phenotype, phenotype) if short else phenotype.lower()

    if fact.discordant:
        called: list[str] = []
        for r in fact.all_readings:
            said = words(r.phenotype).removesuffix(" metabolizer")
            if not r.genetic_phenotype and said not in called:
                called.append(said)
        kind = "" if short or not fact.phenotype.endswith("Metabolizer") else " metabolizer"
        return f"{fact.gene} results disagree ({' vs '.join(called)}{kind})"
    scored = _score_decides(fact.gene, knowledge)

    def score(r: GeneResult) -> str:
        return f" (AS {r.activity_score_text})" if scored and r.activity_score_text else ""

    # a converted result reads as the functional phenotype; the genotype's is its first reading
    genetic = next((r for r in fact.all_readings if not r.genetic_phenotype), fact)
    text = f"{fact.gene} {words(fact.genetic_phenotype or fact.phenotype)}{score(genetic)}"
    if fact.genetic_phenotype and fact.phenoconverted_by:
        on = "on" if short else "while taking"
        text += f" by genotype, {words(fact.phenotype)}{score(fact)} {on} {inhibitor_name(fact)}"
    elif fact.phenoconverted_by:
        text += f" by genotype (taking {inhibitor_name(fact)})"
    return text


def _score_decides(gene: str, knowledge: Knowledge) -> bool:
    """Do the gene's guideline rows go by activity score alone (CYP2C9)?"""
    return any(
        c.activity_score_min is not None and c.phenotype is None
        for r in knowledge.recommendations
        for g, c in r.when.items()
        if g == gene
    )


def guideline_links(affected: list[DrugAdvice]) -> list[dict[str, str]]:
    """One link per guideline of the drugs (the affected ones), naming them."""
    by_url: dict[str, tuple[Guideline, list[str]]] = {}
    for a in sorted(affected, key=lambda a: a.drug):
        guideline = a.match.recommendation.guideline
        if guideline is not None:
            by_url.setdefault(guideline.url, (guideline, []))[1].append(a.drug)
    return [
        {
            "label": f"{g.name} guideline: {', '.join(drugs)}",
            "url": url,
            "type": "absolute",
        }
        for url, (g, drugs) in by_url.items()
    ]


def no_results(knowledge: Knowledge, notices: list[Notice] | None = None) -> dict[str, Any]:
    """The optional card for a patient with no pharmacogenomic result on file (with the
    label and pre-test rules that apply to the patient, as the prescribing cards give them)."""
    by_gene: dict[str, set[str]] = {}
    guidelines: dict[str, tuple[Guideline, list[str]]] = {}
    for rec in knowledge.recommendations:
        for gene in rec.when:
            by_gene.setdefault(gene, set()).add(rec.drug)
        if rec.guideline is not None:
            drugs = guidelines.setdefault(rec.guideline.url, (rec.guideline, []))[1]
            if rec.drug not in drugs:
                drugs.append(rec.drug)
    genes = "; ".join(
        f"{inert(g)} ({', '.join(sorted(drugs))})" for g, drugs in sorted(by_gene.items())
    )
    rules = "\n".join(notice_lines(notices or []))
    return {
        "uuid": card_uuid(),
        "summary": "PGx for pain: no pharmacogenomic results on file",
        "indicator": "info",
        "detail": "No pharmacogenomic result was found for this patient. Results for these "
        f"genes change the advice for pain drugs: {genes}.\n\n"
        + (f"{rules}\n" if rules else "")
        + f"**Source:** CPIC guidelines (links below). Knowledge version {knowledge.version}.",
        "source": {
            "label": f"CPIC guidelines ({SOURCE_LABEL})",
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": NO_RESULTS_TOPIC,
                "display": "No pharmacogenomic results on file",
            },
        },
        "links": [
            {"label": f"{g.name} guideline: {', '.join(drugs)}", "url": url, "type": "absolute"}
            for url, (g, drugs) in guidelines.items()
        ],
    }
