"""What a card is about, in the words a committee and a dashboard use: its gene(s) or marker,
the finding it answers and the advice, from its recommendation id and the knowledge.

The card log keeps, per card, the recommendation id (a guideline row, a label rule, a
pre-test or unclear-result card, the patient-view profile) and the genes as the card built
them. For a pre-test card the latter was the test's name ("CYP2D6 genotyping", a LOINC long
name) and for an age rule "-": the ids say more, so ``CardLabels`` labels every card by its
id where the knowledge knows it, and falls back to what was logged (a row of an older
knowledge version).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..knowledge.loader import Knowledge

#: The card log's ``drug`` of the patient-view profile card (``pipeline.PATIENT_VIEW``).
PATIENT_VIEW = "patient-view"
_ADVICE = {
    "avoid": "avoid",
    "alternative": "consider an alternative",
    "adjust-dose": "adjust the dose",
    "caution": "use with caution",
    "standard": "standard use",
    "no-recommendation": "no recommendation",
}


@dataclass(frozen=True)
class Label:
    drug: str
    genes: str  # "CYP2D6", "CYP2D6/CYP2C19", "HLA-B*15:02"; "" for an age rule
    finding: str  # "Ultrarapid Metabolizer", "no result on file", "age under 12"
    advice: str  # "avoid", "order the test", ...


class CardLabels:
    """Labels by recommendation id, made once from the knowledge."""

    def __init__(self, knowledge: Knowledge | None) -> None:
        self._by_id: dict[str, Label] = {}
        if knowledge is None:
            return
        for rec in knowledge.recommendations:
            when = list(rec.when.items())
            if len(when) == 1:
                finding = when[0][1].describe()
            else:
                finding = "; ".join(f"{g} {c.describe()}" for g, c in when)
            if rec.continuing_over_days:
                finding += f", taken over {rec.continuing_over_days} days"
            self._by_id[rec.id] = Label(
                rec.drug, "/".join(rec.genes), finding, _ADVICE.get(rec.action, rec.action)
            )
        for rule in knowledge.label_rules:
            low, high = rule.min_age_years, rule.max_age_years
            parts = [
                f"age {low:g} to {high:g}"
                if low is not None and high is not None
                else f"age under {high:g}"
                if high is not None
                else f"age {low:g} or over"
                if low is not None
                else ""
            ]
            parts += [" or ".join(r.replace("-", " ") for r in rule.requires)]
            finding = ", ".join(p for p in parts if p)
            advice = (
                "do not use (FDA label)"
                if rule.indicator == "critical"
                else "not recommended (FDA label)"
            )
            self._by_id[rule.id] = Label(rule.drug, "", finding, advice)
        for drug, pre in knowledge.pretest.drugs.items():
            self._by_id[f"{drug}-pretest-{pre.test}"] = Label(
                drug, pre.test, "no result on file", "order the test"
            )
            self._by_id[f"{drug}-unclear-{pre.test}"] = Label(
                drug, pre.test, "result unclear", "order the test"
            )
        for unclear in knowledge.unclear_rules:
            self._by_id[unclear.id] = Label(
                unclear.drug, unclear.marker, "result does not exclude it", "order the test"
            )

    def label(self, recommendation_id: str, drug: str, genes: str, phenotype: str) -> Label:
        """The card's label; one the knowledge does not know is labelled as logged."""
        known = self._by_id.get(recommendation_id)
        if known is not None:
            return known
        if drug == PATIENT_VIEW:
            return Label(PATIENT_VIEW, genes, phenotype, "profile card")
        for kind, finding in (("-pretest-", "no result on file"), ("-unclear-", "result unclear")):
            if kind in recommendation_id:  # (a pre-test card logged the test's name as genes)
                test = recommendation_id.rsplit(kind, 1)[1]
                return Label(drug, test, finding, "order the test")
        return Label(drug, "" if genes == "-" else genes, phenotype, recommendation_id)

    def gene(self, recommendation_id: str, drug: str, genes: str) -> str:
        """The gene(s) or marker of a card, as the metrics label them (``+`` between genes,
        ``none`` for a rule about no gene)."""
        found = self.label(recommendation_id, drug, genes, "").genes
        return found.replace("/", "+") or "none"
