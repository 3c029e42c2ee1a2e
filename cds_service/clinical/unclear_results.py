"""A result on file that does not settle what the drug's guideline depends on.

No guideline row fits an unclear result, and the pre-test card is only for a test not on
file, so without this stage an HLA-B typing that cannot exclude HLA-B*15:02 (``HLA-B*15``,
``HLA-B*15:02/HLA-B*15:13``, ``HLA-B*15:XX``) would give carbamazepine no card at all, while a
patient never tested gets the pre-test card. An unclear result is never treated more quietly
than no result:

* **Rules** (``knowledge/rules/unclear_results.json``, per drug and marker): a card saying the
  allele is not excluded, how to confirm it, and the test to order (e.g. ``warning`` for
  carbamazepine and oxcarbazepine with HLA-B*15:02, CPIC 2017). None when the guideline rows
  already advise avoiding the drug: the unclear allele cannot make that stricter.
* **Pre-test drugs without a rule**: the drug's pre-test card, as for no result, saying that the
  result on file is unclear.

Each card shows the result on file and why it is unclear; the trace says what was decided.
"""

from __future__ import annotations

from ..core.trace import Trace
from ..genomics.gene_decision import GeneResult
from ..knowledge.loader import Knowledge
from ..knowledge.models import Recommendation
from .label_rules import Notice
from .medications import IdentifiedDrug
from .recommendations import Match


def notices(
    drugs: list[IdentifiedDrug],
    facts: dict[str, GeneResult],
    matched: list[Match],
    knowledge: Knowledge,
    pretest_drugs: frozenset[str],
    trace: Trace,
) -> list[Notice]:
    """Cards for the ordered ``drugs`` whose results on file (``facts``, by genotype) leave
    open what their guideline depends on (see the module's notes)."""
    out: list[Notice] = []
    for d in drugs:
        ruled: set[str] = set()
        for rule in knowledge.unclear_rules_by_drug.get(d.drug, []):
            ruled.add(rule.marker)
            fact = facts.get(rule.marker)
            if fact is None or fact.actionable:
                continue
            why = _why(fact)
            avoided = _avoided(d, matched)
            if avoided is not None:
                trace.add(
                    "unclear",
                    f"{d.drug}: the {rule.marker} result is unclear ({why}), but {avoided.id} "
                    "already advises avoiding the drug: no separate card",
                )
                continue
            test = knowledge.pretest.tests[rule.test]
            trace.add(
                "unclear",
                f"{d.drug}: {rule.marker} not excluded ({why}): {rule.indicator} card "
                f"{rule.id}, suggesting {test.display}",
            )
            out.append(
                Notice(
                    rule.id,
                    d,
                    rule.indicator,
                    rule.summary,
                    rule.text,
                    rule.source,
                    (test.display, test.loinc),
                    result=fact,
                )
            )
        pre = knowledge.pretest.drugs.get(d.drug)
        if pre is None or d.drug not in pretest_drugs or pre.test in ruled:
            continue
        fact = facts.get(pre.test)
        if fact is None or fact.actionable:
            continue  # no result: the pre-test card; a clear one: the guideline rows
        test = knowledge.pretest.tests[pre.test]
        trace.add(
            "unclear",
            f"{d.drug}: the {pre.test} result on file is unclear ({_why(fact)}): the pre-test "
            "card, as for no result",
        )
        out.append(
            Notice(
                f"{d.drug}-unclear-{pre.test}",
                d,
                "info",
                f"{d.drug.capitalize()}: the {pre.test} result on file is unclear",
                pre.text,
                pre.source,
                (test.display, test.loinc),
                result=fact,
            )
        )
    return out


def _why(fact: GeneResult) -> str:
    return fact.notes[0] if fact.notes else "no usable value"


def _avoided(drug: IdentifiedDrug, matched: list[Match]) -> Recommendation | None:
    """The recommendation row that already advises avoiding this order's drug, if any."""
    for m in matched:
        same = m.drug is drug or (
            m.drug.drug == drug.drug and m.drug.order.reference == drug.order.reference
        )
        if same and m.alerts and not m.possible and m.recommendation.action == "avoid":
            return m.recommendation
    return None
