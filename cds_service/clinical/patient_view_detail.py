"""The patient-view card's detail: what a drug's advice is (``DrugAdvice``), and the Markdown
the card shows: a table per gene (result, results that disagree, phenoconversion with the
genotype beside it, each affected drug's advice with the other readings'), the genes that
change nothing on one line, the rules that apply whatever the genotype (FDA age rules, tests
to order first) and the drugs the site does not show. ``patient_view`` decides what goes in;
this module only writes it. Words from the lab or the request are escaped (``inert``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..core.wording import code_span, escaped, inert, number
from ..genomics.gene_decision import GeneResult, Reported
from ..knowledge.loader import Knowledge
from .label_rules import Notice
from .recommendations import Match, Reading, inhibitor_name, reading_words
from .severity import ADVICE, LEVELS, advice

ADVICE_CHARS = 160
UNREMARKABLE = frozenset({"Normal Metabolizer", "negative"})
SPANS = "Advice depends on the activity score"


def advice_words(match: Match) -> str:
    """The advice in a few words: the row's own summary wording where it has one."""
    if match.possible:
        return SPANS
    return advice(match.recommendation)


@dataclass(frozen=True)
class DrugAdvice:
    """What a prescribing card for ``drug`` would say (``level`` None: no card)."""

    drug: str
    match: Match
    level: str | None

    @property
    def affected(self) -> bool:
        return self.level is not None

    @property
    def advice(self) -> str:
        return advice_words(self.match)

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(r.gene for r in self.match.results)


@dataclass(frozen=True)
class Shown:
    """What the card shows once the site's policy is applied."""

    advice: dict[str, DrugAdvice]
    notices: list[Notice] = field(default_factory=list)
    #: drugs the site keeps silent (their advice is not shown)
    silent: list[str] = field(default_factory=list)
    #: of those, the ones whose card would be shown were they on
    silent_affected: list[DrugAdvice] = field(default_factory=list)


def causes(a: DrugAdvice) -> tuple[str, ...]:
    """The genes a drug is listed under: for an affected drug, those of its row whose result
    is not the unremarkable one (CYP2D6, not the normal CYP2C19 beside it); else all."""
    if not a.affected:
        return a.genes
    causes = tuple(r.gene for r in a.match.results if r.phenotype not in UNREMARKABLE)
    return causes or a.genes


def detail(
    facts: dict[str, GeneResult],
    per_gene: dict[str, list[DrugAdvice]],
    changing: list[str],
    knowledge: Knowledge,
    shown: Shown | None = None,
    hidden: set[str] | None = None,
) -> str:
    shown = shown or Shown({})
    hidden = hidden or set()
    lines: list[str] = [
        "What each result means for the pain drugs CPIC covers: the advice a prescribing "
        "card gives when one is ordered.",
        "",
    ]
    # results that disagree get their table even when no advice changes (they are listed)
    tables = changing + [
        g for g in sorted(facts) if g not in changing and g not in hidden and facts[g].discordant
    ]
    # a drug a label rule restricts for this patient is not "unchanged" (it is listed below)
    ruled = {n.drug.drug for n in shown.notices if n.test is None}
    for gene in tables:
        items = [a for a in per_gene.get(gene, []) if a.affected or a.drug not in ruled]
        lines += [*gene_table(facts[gene], items, knowledge), ""]
    usable = [g for g in sorted(facts) if g not in tables and facts[g].actionable]
    quiet = [g for g in usable if g not in hidden]
    if quiet:
        parts = []
        for g in quiet:
            drugs = sorted({a.drug for a in per_gene.get(g, []) if a.drug not in ruled})
            parts.append(f"{_result_words(facts[g])}" + (f" ({', '.join(drugs)})" if drugs else ""))
        lines += ["**No change in advice:** " + "; ".join(parts) + ".", ""]
    if hidden:
        lines += [
            "**Results:** " + "; ".join(_result_words(facts[g]) for g in sorted(hidden)) + ".",
            "",
        ]
    unclear = [g for g in sorted(facts) if not facts[g].actionable]
    if unclear:
        lines += [
            "**Not usable (no guideline row applies to them):** "
            + "; ".join(
                escaped(g) + (f" ({inert(facts[g].notes[0])})" if facts[g].notes else "")
                for g in unclear
            )
            + ".",
            "",
        ]
    lines += notice_lines(shown.notices)
    if shown.silent:
        lines += [
            "**Not shown at this site** (site configuration; no advice is given here, which "
            f"does not mean none applies): {', '.join(shown.silent)}.",
            "",
        ]
    lines.append(
        f"**Source:** CPIC guidelines (links below). Knowledge version {knowledge.version}."
    )
    return "\n".join(lines)


def notice_lines(notices: list[Notice]) -> list[str]:
    """The rules that apply whatever the genotype: FDA label rules for the patient's age,
    and the tests to order before a drug (pre-test cards), each as its card says it."""
    lines: list[str] = []
    rules = [n for n in notices if n.test is None]
    tests = [n for n in notices if n.test is not None]
    if rules:
        lines += ["**Whatever the genotype** (FDA label rules for this patient):", ""]
        lines += [
            f"- {n.drug.drug}: **{escaped(n.summary)}**. {escaped(_short_advice(n.text))}"
            for n in rules
        ]
        lines.append("")
    if tests:
        lines += ["**Test before prescribing:**", ""]
        lines += [
            f"- {n.drug.drug}: **{escaped(n.summary)}**. Suggested test: "
            f"{escaped(n.test[0] if n.test else '')}."
            for n in tests
        ]
        lines.append("")
    return lines


def gene_table(fact: GeneResult, items: list[DrugAdvice], knowledge: Knowledge) -> list[str]:
    genetic = fact.genetic_phenotype
    if fact.discordant:
        heading = "results disagree — verify before prescribing"
    else:
        heading = f"{genetic.lower()} by genotype" if genetic else fact.phenotype.lower()
    rows = [f"| **{inert(fact.gene)}** | **{escaped(heading)}** |", "|---|---|"]
    if fact.discordant:
        rows += [f"| result | {_reported(r)} |" for r in fact.disagreeing]
        rows.append(
            "| note | no change of CPIC's rules explains the difference: confirm with the lab "
            "or repeat the test; until then each drug follows the riskier reading |"
        )
    else:
        rows.append(f"| result | {_result(fact)} |")
    if genetic or fact.phenoconverted_by:
        functional = (
            f"functionally **{fact.phenotype.lower()}**"
            if genetic
            else "an effect this result cannot size"
        )
        rows.append(
            f"| phenoconversion | {functional} while taking "
            + ", ".join(inert(p) for p in fact.phenoconverted_by)
            + "; the genotype stays, so advice by genotype is never dropped |"
        )
    if fact.reinterpreted_from:
        rows.append(
            f"| lab's label | {inert(fact.reinterpreted_from)} (outdated; re-interpreted) |"
        )
    for note in fact.notes:
        if fact.phenoconverted_by and note.startswith(f"{fact.gene} ") and " by " in note:
            continue  # the phenoconversion row says it
        if fact.phenoconverted_by and note.startswith("the patient takes "):
            continue
        rows.append(f"| note | {inert(note)} |")
    unchanged = []
    for a in sorted(items, key=lambda a: (-LEVELS[a.level], a.drug)):
        if not a.affected:
            unchanged.append(f"{a.drug} ({escaped(a.advice.lower())})")
            continue
        rows.append(f"| {a.drug} | {_advice_cell(a, knowledge)} |")
    if unchanged:
        rows.append(f"| no change | {', '.join(unchanged)} |")
    return rows


def _reported(r: Reported) -> str:
    """One of the results that disagree, in a table cell."""
    value = _code(r.value) if "*" in r.value and " " not in r.value else f"'{inert(r.value)}'"
    read = r.phenotype.lower()
    if r.activity_score_text:
        read += f", activity score {inert(r.activity_score_text)}"
    when = inert(r.date_text) if r.date_text else "undated"
    lab = f", {inert(r.performer)}" if r.performer else ""
    return f"{r.kind} {value} (read as {read}), {when}{lab}"


def _advice_cell(a: DrugAdvice, knowledge: Knowledge) -> str:
    m = a.match
    rec = m.recommendation
    org = rec.guideline.organization if rec.guideline else "guideline"
    discordant = [r for r in m.results if r.discordant]
    condition = (
        f" if {escaped('; '.join(reading_words(r) for r in discordant))}" if discordant else ""
    )
    if m.possible:
        options = "; ".join(
            f"{'; '.join(c.describe() for c in row.when.values())}: {ADVICE[row.action].lower()}"
            for row in m.possible
        )
        text = f"**{SPANS}**{condition} ({options}); the genotype or score decides"
    else:
        text = (
            f"**{escaped(a.advice)}**{condition} ({org}, {rec.strength}). "
            f"{inert(_short_advice(rec.recommendation))}"
        )
    others = [r for r in m.results if r.gene not in causes(a)]
    if others:
        text += " With " + ", ".join(_result_words(r) for r in others) + "."
    dosing = knowledge.dosing.drugs.get(a.drug)
    low = dosing.low_dose_max_mg_per_day if dosing else None
    if low is not None and rec.action in ("avoid", "alternative", "adjust-dose"):
        # as label_rules.with_dose: the dose advice is for depression doses
        text += f" At ≤{number(low)} mg/day (neuropathic-pain doses): use with caution."
    for reading in m.alternatives:
        text += " " + _other_reading(reading, m)
    return text


def _other_reading(reading: Reading, m: Match) -> str:
    """What another reading of the results advises: ``By genotype alone: label dosing.``,
    ``While taking duloxetine: label dosing (not to be relied on).``, ``If normal
    metabolizer: label dosing.``"""
    row = reading.recommendation
    if reading.possible:
        words = SPANS.lower()
    elif row is None:
        words = "no genotype-based advice"
    else:
        words = escaped(advice(row).lower())
    followed_functional = any(r.genetic_phenotype for r in m.results)
    differing = [r for r in reading.results if r not in m.results]
    if any(r.discordant for r in differing):
        return f"If {escaped('; '.join(reading_words(r) for r in differing))}: {words}."
    if followed_functional:
        return f"By genotype alone: {words}."
    converted = [r for r in differing if r.genetic_phenotype]
    if converted:
        return f"While taking {inhibitor_name(converted[0])}: {words} (not to be relied on)."
    return f"Otherwise: {words}."


def _short_advice(text: str) -> str:
    """The advice's first sentence, and the next ones while they keep it short (a caution's
    "if the response is not adequate..." belongs to it)."""
    sentences = re.split(r"(?<=\.)\s+", text.strip())
    out = sentences[0]
    for sentence in sentences[1:]:
        if len(out) + 1 + len(sentence) > ADVICE_CHARS:
            break
        out += " " + sentence
    return out


def _result(fact: GeneResult) -> str:
    parts = []
    if fact.diplotype:
        parts.append(_code(fact.diplotype))
    if fact.genetic_phenotype is None and fact.activity_score_text is not None:
        parts.append(f"activity score {inert(fact.activity_score_text)}")
    when = f" of {inert(fact.date_text)}" if fact.date_text else ""
    parts.append(f"{fact.kind} result{when}")
    return ", ".join(parts)


def _result_words(fact: GeneResult) -> str:
    text = f"{fact.gene} {(fact.genetic_phenotype or fact.phenotype).lower()}"
    if fact.genetic_phenotype:
        text += f" by genotype, {fact.phenotype.lower()} while taking {inhibitor_name(fact)}"
    return inert(text) + (f" {_code(fact.diplotype)}" if fact.diplotype else "")


def _code(text: str) -> str:
    return code_span(text, table=True)
