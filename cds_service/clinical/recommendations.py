"""Match identified drugs against the patient's gene results and the guideline rows.

For each drug, the rows whose genes all have an actionable result are candidates; the
rows naming the most genes win (a two-gene amitriptyline row beats a one-gene row when
both results exist). A drug or gene the knowledge does not cover matches nothing.

A result without a single activity score (a phenotype reported without its score, a
diplotype of unknown copy number) stands for a range of scores. When that range spans rows
that give the same advice, that advice applies with the weakest of their strengths. When
the rows disagree (a CYP2C9 intermediate metabolizer is AS 1, "lower dose", or AS 1.5,
"usual dose"), the match lists every possibility: the card says what each means and that
the genotype or activity score decides. Such a result is never silent.

A result that leaves more than one reading open (``GeneResult.readings``: results that
disagree; the genotype and the phenotype an interacting drug gives) is matched reading by
reading, and the most severe advice is followed: the match carries the other readings with
their advice (``alternatives``) so the card can say what is uncertain. On a tie the first
reading (the genotype before an interacting drug's phenotype) is followed. Uncertainty never
silences an alert, and an interacting drug may add or raise advice, never lower it.
A continuing-therapy row (``continuing_over_days``: CPIC's cautious continuation of
carbamazepine or oxcarbazepine taken for more than 3 months) applies only when the medication
history (``medication_history.therapies``) shows the drug taken for longer, and then replaces
the row it continues; an unknown start, or none on file, keeps the row for a new start.

**Which guideline decides.** A site chooses its guideline sets in order (``PGX_CDS_GUIDELINES``
or the site file's ``guidelines``: ``cpic``, ``dpwg``; ``Knowledge.precedence``, FDA's label
rows last). For each drug and reading, the first set that has a row for the result, or says
explicitly that it reviewed the pair and advises no action (``no_recommendation`` entries:
DPWG's "no action"), decides; the others are matched too, and where one advises differently
the match carries its advice (``other_advice``) so the card can say so in one line. Each set's
rows are matched by the same rules (spanned scores, continuing therapy, several genes).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from ..core.trace import Trace
from ..genomics.gene_decision import GeneResult
from ..knowledge.loader import Knowledge
from ..knowledge.models import SILENT_ACTIONS, Recommendation
from .medication_history import Therapy
from .medications import IdentifiedDrug
from .severity import ACTIONS, LEVELS, STRENGTHS, indicator_with_floor, spanned_indicator

Span = tuple[float, float | None] | None


@dataclass(frozen=True)
class Reading:
    """Another reading of the patient's results, and the advice it would give."""

    #: the results of this reading, one per gene the drug's rows use
    results: tuple[GeneResult, ...]
    #: the row it matches (None: no row, e.g. a phenotype the guideline has no row for)
    recommendation: Recommendation | None
    #: the card's indicator for it (None: no card)
    level: str | None
    possible: tuple[Recommendation, ...] = ()


@dataclass(frozen=True)
class OtherAdvice:
    """What another of the site's guideline sets advises for the same result."""

    guideline: str  # its name: 'CPIC 2021'
    #: its row (None: it has no row for the result, or reviewed the pair without advice)
    recommendation: Recommendation | None
    #: why it has no row ('reviewed codeine and CYP2D6: no action'), when it has none
    note: str = ""
    #: it gives several possibilities for this result (a range of activity scores)
    spans: bool = False


@dataclass(frozen=True)
class Match:
    drug: IdentifiedDrug
    recommendation: Recommendation
    results: tuple[GeneResult, ...]
    #: rows the result may fall in when they disagree (``recommendation`` is the most severe)
    possible: tuple[Recommendation, ...] = ()
    #: the other readings the results leave open, with their advice (this match follows
    #: the most severe)
    alternatives: tuple[Reading, ...] = ()
    #: the order's dose against the guideline's dose advice, for the card
    dose_text: str | None = None
    #: a tricyclic ordered at a low (pain) dose: the guideline's dose advice does not apply
    low_dose: bool = False
    #: the guideline's daily dose for this order (mg/day, low to high), where it gives one
    dose_target: tuple[float, float] | None = None
    #: for a drug with a continuing-therapy row: since when the chart shows it taken
    history_text: str | None = None
    #: the order's most a day is already within (or below) the guideline's adjusted dose
    within_target: bool = False
    #: the advice of the site's other guideline sets for the same result (see the notes)
    other_advice: tuple[OtherAdvice, ...] = ()

    @property
    def alerts(self) -> bool:
        if self.possible:
            return True
        return self.recommendation.action not in SILENT_ACTIONS


def reading_words(r: GeneResult) -> str:
    """A reading in a few words: ``CYP2D6 ultrarapid metabolizer by genotype``,
    ``CYP2D6 poor metabolizer while taking paroxetine``."""
    text = f"{r.gene} {r.phenotype.lower()}"
    if r.activity_score_text is not None and r.discordant:
        text += f" (activity score {r.activity_score_text})"
    if r.genetic_phenotype:
        text += f" while taking {inhibitor_name(r)}"
    elif r.phenoconverted_by:
        text += " by genotype"
    return text


def inhibitor_name(r: GeneResult) -> str:
    """The interacting drugs of a converted result, the strongest first: ``paroxetine``,
    ``amiodarone and fluconazole`` (several inhibitors of one enzyme: all are named)."""
    names = [u.split(" (")[0] for u in r.phenoconverted_by]
    if not names:
        return "?"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def score_span(fact: GeneResult, knowledge: Knowledge) -> tuple[float | None, Span]:
    """A result's activity score, or (None, the range of scores it stands for)."""
    if fact.score_range is not None:
        return None, fact.score_range
    if fact.activity_score is not None:
        return fact.activity_score, None
    return None, knowledge.band(fact.gene, fact.phenotype)


def match(
    drugs: list[IdentifiedDrug],
    facts: dict[str, GeneResult],
    knowledge: Knowledge,
    trace: Trace,
    therapies: dict[str, Therapy] | None = None,
) -> list[Match]:
    """The rows that apply to each drug; ``therapies``: since when the patient has taken the
    drugs that have continuing-therapy rows (none: every drug is a new start)."""
    therapies = therapies or {}
    matches: list[Match] = []
    for identified in drugs:
        rows = [
            r for r in knowledge.recommendations_for(identified.drug) if not r.within_dose_limit
        ]
        if not rows:
            elsewhere = knowledge.chosen_elsewhere.get(identified.drug, [])
            trace.add(
                "recommendations",
                f"{identified.drug}: no guideline recommendation covers this drug"
                + (
                    f" in the guidelines this site chose ({', '.join(knowledge.guideline_sets)}); "
                    f"{' and '.join(g.name for g in elsewhere)} has rows for it"
                    if elsewhere
                    else ""
                ),
            )
            continue
        genes = sorted({g for r in rows for g in r.when})
        missing = [g for g in genes if g not in facts]
        unclear = [g for g in genes if g in facts and not facts[g].actionable]
        for gene in missing:
            trace.add("recommendations", f"{identified.drug}: no {gene} result for this patient")
        for gene in unclear:
            trace.add(
                "recommendations",
                f"{identified.drug}: {gene} result is indeterminate: no guideline row applies",
            )
        therapy = therapies.get(identified.drug)
        applicable = [
            r
            for r in rows
            if all(g in facts and g not in unclear for g in r.when)
            and _continues(r, therapy) is not False
        ]
        used = sorted({g for r in applicable for g in r.when})
        combos = list(itertools.product(*(facts[g].all_readings for g in used)))
        if len(combos) == 1:
            reading = dict(zip(used, combos[0], strict=True))
            found = _match_reading(
                identified, rows, applicable, reading, knowledge, trace, None, therapy
            )
            matches.extend(found)
            continue
        options = []
        for combo in combos:
            label = "; ".join(reading_words(r) for r in combo)
            reading = dict(zip(used, combo, strict=True))
            found = _match_reading(
                identified, rows, applicable, reading, knowledge, trace, label, therapy
            )
            options.append((found, combo, label))
        best = max(range(len(options)), key=lambda i: (_rank(options[i][0], knowledge), -i))
        chosen, _, label = options[best]
        trace.add(
            "recommendations",
            f"{identified.drug}: the results leave {len(options)} readings open; the most "
            f"severe advice is followed ({label})",
        )
        alternatives = tuple(
            _reading(found, combo, knowledge)
            for i, (found, combo, _) in enumerate(options)
            if i != best
        )
        matches.extend(replace(m, alternatives=alternatives) for m in chosen)
    return matches


def level_of(m: Match, knowledge: Knowledge) -> str | None:
    """The indicator a match's row gives (before the order's dose is considered)."""
    if m.possible:
        return spanned_indicator(m.possible)
    return indicator_with_floor(m.recommendation, knowledge)


def _rank(found: list[Match], knowledge: Knowledge) -> tuple[int, int, float, int]:
    """How severe a reading's advice is: its card's indicator, then the action, then the
    smaller dose (a CYP2C9 poor metabolizer's 25-50% over an intermediate one's lowest
    starting dose), then the guideline's strength (a reading without a row is the mildest)."""
    return max(
        (
            (
                LEVELS[level_of(m, knowledge)],
                ACTIONS[m.recommendation.action],
                -dose_share(m.recommendation, knowledge),
                STRENGTHS[m.recommendation.strength],
            )
            for m in found
        ),
        default=(0, -1, -1.0, -1),
    )


def dose_share(row: Recommendation, knowledge: Knowledge) -> float:
    """The most of the dose a row allows (``rules/dosing.json``; 1 where it changes none)."""
    change = knowledge.dosing.dose_changes.get(row.id)
    return change.high if change is not None else 1.0


def _reading(found: list[Match], combo: tuple[GeneResult, ...], knowledge: Knowledge) -> Reading:
    if not found:
        return Reading(combo, None, None)
    top = max(found, key=lambda m: _rank([m], knowledge))
    return Reading(combo, top.recommendation, level_of(top, knowledge), top.possible)


def _match_reading(
    identified: IdentifiedDrug,
    rows: list[Recommendation],
    applicable: list[Recommendation],
    facts: dict[str, GeneResult],
    knowledge: Knowledge,
    trace: Trace,
    label: str | None,
    therapy: Therapy | None = None,
) -> list[Match]:
    """The matches for one reading of the results (one result per gene) from the guideline
    set that decides (see the module's notes); ``label`` names the reading in the trace when
    there are several; ``therapy``: since when the drug is taken (continuing-therapy rows)."""
    drug = identified.drug
    if drug in knowledge.stand_ins:
        org, why = knowledge.stand_ins[drug]
        trace.add("recommendations", f"{drug}: {org}'s rows stand in: {why}")
    orgs = [
        org
        for org in knowledge.precedence_for(drug)
        if any(knowledge.organization(r) == org for r in rows) or (drug, org) in knowledge.no_action
    ]
    if orgs == [knowledge.organization(rows[0])] and not _announces(knowledge):
        return _org_match(identified, rows, applicable, facts, knowledge, trace, label, therapy)
    name = f"{drug} [{label}]" if label else drug
    outcomes: list[tuple[str, list[Match], str, Trace]] = []
    for org in orgs:
        own = Trace()
        org_rows = [r for r in rows if knowledge.organization(r) == org]
        found = _org_match(
            identified,
            org_rows,
            [r for r in applicable if knowledge.organization(r) == org],
            facts,
            knowledge,
            own,
            label,
            therapy,
        )
        note = "" if found else _no_action(drug, org, facts, knowledge)
        outcomes.append((org, found, note, own))
    # a set decides with advice or an explicit "no action"; one that only says it makes no
    # recommendation (CPIC: evidence insufficient) leaves the result to the next set, and
    # decides only where no set advises
    deciding = next(
        (i for i, (_, found, note, _) in enumerate(outcomes) if note or _advises(found)), None
    )
    if deciding is None:
        deciding = next((i for i, (_, found, _, _) in enumerate(outcomes) if found), None)
    for org, found, note, own in outcomes[: (deciding + 1) if deciding is not None else None]:
        trace.lines.extend(own.lines)
        if not found and not note:
            trace.add(
                "recommendations",
                f"{name}: {_named(org, rows, knowledge)} has no row for this result",
            )
        elif found and not note and not _advises(found) and org != outcomes[deciding or 0][0]:
            trace.add(
                "recommendations",
                f"{name}: {_named(org, rows, knowledge)} makes no recommendation for this "
                "result: the next guideline set decides",
            )
    if deciding is None:
        return []
    org, found, note, _ = outcomes[deciding]
    who = _named(org, rows, knowledge)
    others = [
        _other(o, f, n, rows, knowledge) for i, (o, f, n, _) in enumerate(outcomes) if i != deciding
    ]
    chosen = ", ".join(knowledge.guideline_sets)
    if note:
        trace.add(
            "recommendations",
            f"{name}: {who} decides (this site's guidelines, in order: {chosen}): {note}: no card",
        )
    else:
        trace.add(
            "recommendations",
            f"{name}: {who} decides (this site's guidelines, in order: {chosen}; the first with "
            f"advice for this result)",
        )
    for other in others:
        advice_words = (
            f"{other.recommendation.id} ({other.recommendation.action})"
            if other.recommendation is not None
            else other.note or "no row for this result"
        )
        trace.add("recommendations", f"{name}: {other.guideline} would give {advice_words}")
    return [replace(m, other_advice=tuple(others)) for m in found]


def _advises(found: list[Match]) -> bool:
    """Does a set's match advise (a row other than 'no recommendation')?"""
    return any(m.possible or m.recommendation.action != "no-recommendation" for m in found)


def _announces(knowledge: Knowledge) -> bool:
    """Does the trace name the deciding guideline (any choice but the default, CPIC alone)?"""
    return knowledge.guideline_sets != ("cpic",)


def _named(org: str, rows: list[Recommendation], knowledge: Knowledge) -> str:
    """An organisation's guideline for a drug by its name ('DPWG 2022'), or the organisation."""
    for r in rows:
        if knowledge.organization(r) == org and r.guideline is not None:
            return r.guideline.name
    return org


def _no_action(drug: str, org: str, facts: dict[str, GeneResult], knowledge: Knowledge) -> str:
    """Why ``org`` decides without a row: it reviewed the drug with a gene the patient has a
    result for and advises nothing ('DPWG 2024 reviewed duloxetine and CYP2D6: no action
    needed ...'), or '' when it says nothing about this result."""
    for guideline, item in knowledge.no_action.get((drug, org), []):
        if item.gene in facts and facts[item.gene].actionable:
            return f"{guideline.name} reviewed {drug} and {item.gene}: {item.reason.rstrip('.')}"
    return ""


def _other(
    org: str,
    found: list[Match],
    note: str,
    rows: list[Recommendation],
    knowledge: Knowledge,
) -> OtherAdvice:
    """Another set's advice for the same reading (the most severe of its matches)."""
    name = _named(org, rows, knowledge)
    if not found:
        return OtherAdvice(name, None, note or "no row for this result")
    top = max(found, key=lambda m: _rank([m], knowledge))
    return OtherAdvice(name, top.recommendation, spans=bool(top.possible))


def _org_match(
    identified: IdentifiedDrug,
    rows: list[Recommendation],
    applicable: list[Recommendation],
    facts: dict[str, GeneResult],
    knowledge: Knowledge,
    trace: Trace,
    label: str | None,
    therapy: Therapy | None = None,
) -> list[Match]:
    """One guideline set's matches for one reading (``rows``, ``applicable``: its rows)."""
    name = f"{identified.drug} [{label}]" if label else identified.drug
    usable = {g: score_span(f, knowledge) for g, f in facts.items()}
    hits = [
        r
        for r in applicable
        if all(c.matches(facts[g].phenotype, *usable[g]) for g, c in r.when.items())
    ]
    possible: tuple[Recommendation, ...] = ()
    if not hits and applicable:
        hits, possible = _spanned_rows(name, applicable, facts, knowledge, trace)
    if hits:
        most = max(len(r.when) for r in hits)
        hits = [r for r in hits if len(r.when) == most]
        hits = _continuing(name, rows, hits, therapy, trace)
    elif applicable:
        trace.add(
            "recommendations",
            f"{name}: no row for "
            + ", ".join(
                f"{g} {facts[g].phenotype}" for g in sorted({g for r in applicable for g in r.when})
            ),
        )
    history = therapy.describe() if therapy is not None else None
    found = [
        Match(identified, row, tuple(facts[g] for g in row.when), possible, history_text=history)
        for row in hits
    ]
    for m in found:
        row = m.recommendation
        verdict = "alert" if m.alerts else "no alert"
        trace.add(
            "recommendations", f"{name}: {row.id} ({row.action}, {row.strength}) -> {verdict}"
        )
    return found


def _continues(row: Recommendation, therapy: Therapy | None) -> bool | None:
    """Does a continuing-therapy row apply (taken for more than its days)? None for a row
    without that condition."""
    if row.continuing_over_days is None:
        return None
    days = therapy.days if therapy is not None else None
    return days is not None and days > row.continuing_over_days


def _continuing(
    drug: str,
    rows: list[Recommendation],
    hits: list[Recommendation],
    therapy: Therapy | None,
    trace: Trace,
) -> list[Recommendation]:
    """``hits`` with each row a continuing-therapy row replaces taken out; the trace says
    why a continuing-therapy row for the same result applies or not."""
    for row in rows:
        if row.continuing_over_days is None or not any(h.when == row.when for h in hits):
            continue
        limit = row.continuing_over_days
        if row in hits and therapy is not None:
            trace.add(
                "recommendations",
                f"{drug}: taken for {therapy.days} days (more than {limit}): {row.id} replaces "
                "the advice for a new start",
            )
            hits = [h for h in hits if h is row or h.when != row.when]
        elif therapy is None:
            trace.add(
                "recommendations",
                f"{drug}: {row.id} not applied: no record on file shows {drug} taken for more "
                f"than {limit} days; the advice for a new start stands",
            )
        elif therapy.days is None:
            trace.add(
                "recommendations",
                f"{drug}: {row.id} not applied: the record on file ({therapy.ref}) states no "
                f"start, so more than {limit} days of use cannot be shown; the advice for a new "
                "start stands",
            )
        else:
            trace.add(
                "recommendations",
                f"{drug}: {row.id} not applied: taken for {therapy.days} days, not more than "
                f"{limit}; the advice for a new start stands",
            )
    return hits


def _spanned_rows(
    drug: str,
    applicable: list[Recommendation],
    facts: dict[str, GeneResult],
    knowledge: Knowledge,
    trace: Trace,
) -> tuple[list[Recommendation], tuple[Recommendation, ...]]:
    """Rows a result without a single activity score may fall in (see the module's notes):
    ``([weakest], ())`` when they agree, ``([most severe], all of them)`` when they do not,
    ``([], ())`` when the result's range meets fewer than two rows."""
    spanned: list[Recommendation] = []
    for row in applicable:
        fits = True
        for gene, cond in row.when.items():
            fact = facts[gene]
            score, span = score_span(fact, knowledge)
            if score is None and span is not None and cond.activity_score_min is not None:
                high = cond.activity_score_max
                fits = (
                    fits
                    and cond.phenotype in (None, fact.phenotype)
                    and (high is None or span[0] <= high)
                    and (span[1] is None or span[1] >= cond.activity_score_min)
                )
            elif not cond.matches(fact.phenotype, score, span):
                fits = False
        if fits:
            spanned.append(row)
    if len(spanned) < 2:
        return [], ()
    ids = ", ".join(r.id for r in spanned)
    if len({(r.action, dose_share(r, knowledge)) for r in spanned}) == 1:
        weakest = min(spanned, key=lambda r: STRENGTHS[r.strength])
        trace.add(
            "recommendations",
            f"{drug}: no single activity score; rows {ids} agree ({weakest.action}); the "
            f"weakest strength ({weakest.strength}) is shown",
        )
        return [weakest], ()
    severe = max(
        spanned,
        key=lambda r: (ACTIONS[r.action], -dose_share(r, knowledge), STRENGTHS[r.strength]),
    )
    trace.add(
        "recommendations",
        f"{drug}: no single activity score; rows {ids} give different advice: one card lists "
        "each possibility (the genotype or activity score decides)",
    )
    spanned.sort(key=lambda r: [c.activity_score_min or 0.0 for c in r.when.values()])
    return [severe], tuple(spanned)
