"""The shapes of the knowledge files (``knowledge/``; ``knowledge/README.md`` describes them).

Each file is validated against these models when the service starts (``loader``), so a broken
file stops the service rather than producing a wrong card.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["avoid", "alternative", "adjust-dose", "caution", "standard", "no-recommendation"]
#: CPIC's classification; "label" for an FDA label statement (no strength classification)
Strength = Literal["strong", "moderate", "optional", "none", "label"]
#: Actions that never produce a card.
SILENT_ACTIONS = frozenset({"standard", "no-recommendation"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Guideline(_Model):
    id: str
    organization: Literal["CPIC", "DPWG", "FDA"]
    title: str
    citation: str
    year: int
    pmid: str | None = Field(default=None, pattern=r"^\d+$")  # None: an FDA label
    url: str = Field(pattern=r"^https://")
    url_note: str | None = None
    license: str
    #: how the organisation names this version ("CPIC 2016 update"); default "<org> <year>"
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or f"{self.organization} {self.year}"


class GeneCondition(_Model):
    """What a gene's result must be for a row to apply: a phenotype, an activity-score
    range, or both."""

    phenotype: str | None = None
    activity_score_min: float | None = None
    activity_score_max: float | None = None

    @model_validator(mode="after")
    def _something(self) -> GeneCondition:
        if self.phenotype is None and self.activity_score_min is None:
            raise ValueError("a condition needs a phenotype or an activity score range")
        return self

    def matches(
        self,
        phenotype: str | None,
        activity_score: float | None,
        band: tuple[float, float | None] | None = None,
    ) -> bool:
        """Does a result match? Without an activity score, a score range matches only if the
        whole band the phenotype implies (``band``) lies inside it: a CYP2C9 poor metabolizer
        (0-0.5) matches "0-0.5", an intermediate one (1-1.5) matches neither "1" nor "1.5"."""
        if self.phenotype is not None and phenotype != self.phenotype:
            return False
        if self.activity_score_min is not None:
            if activity_score is None:
                if band is None or band[1] is None:
                    return False
                high = self.activity_score_max
                return band[0] >= self.activity_score_min and (high is None or band[1] <= high)
            high = self.activity_score_max
            if activity_score < self.activity_score_min or (
                high is not None and activity_score > high
            ):
                return False
        return True

    def describe(self) -> str:
        parts = [self.phenotype] if self.phenotype else []
        if self.activity_score_min is not None:
            low, high = self.activity_score_min, self.activity_score_max
            parts.append(
                f"activity score {low:g}"
                if low == high
                else f"activity score {low:g}–{high:g}"
                if high is not None
                else f"activity score ≥{low:g}"
            )
        return ", ".join(parts)


class Recommendation(_Model):
    id: str
    drug: str
    when: dict[str, GeneCondition] = Field(min_length=1)
    action: Action
    strength: Strength
    table: str
    implication: str = Field(min_length=10)
    recommendation: str = Field(min_length=10)
    alternatives: list[str] = Field(default_factory=list)
    #: the card summary's first words where the action's default would mislead
    summary: str | None = Field(default=None, max_length=80)
    #: the card's indicator where the action's default does not fit (CPIC's cautious
    #: continuation of a drug it says not to start: a warning, not an info card)
    indicator: Literal["critical", "warning", "info"] | None = None
    #: continuing therapy: the row applies only when the patient's medication history shows
    #: the drug taken for more than this many days (an active order or medication statement
    #: whose start is older), and then replaces the row with the same drug and ``when``
    continuing_over_days: int | None = Field(default=None, gt=0)
    guideline: Guideline | None = None  # filled in by the loader from the file's header

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(self.when)


class NoRecommendation(_Model):
    drug: str
    gene: str
    table: str
    reason: str


class LabelStatement(_Model):
    """What a drug label adds to a guideline row of another organisation (shown on its card)."""

    drug: str
    gene: str
    phenotypes: list[str]
    text: str = Field(min_length=10)


class GuidelineFile(_Model):
    guideline: Guideline
    recommendations: list[Recommendation] = Field(default_factory=list)
    no_recommendation: list[NoRecommendation] = Field(default_factory=list)
    label_statements: list[LabelStatement] = Field(default_factory=list)


class PhenotypeBand(_Model):
    phenotype: str
    min: float
    max: float | None = None


class Allele(_Model):
    function: str
    activity_value: str | None = None


class GeneTable(_Model):
    gene: str
    hgnc: str
    source: dict[str, str]
    alleles: dict[str, Allele]
    scoring: Literal["activity_score", "function_pair"]
    phenotype_bands: list[PhenotypeBand] = Field(default_factory=list)
    function_pairs: dict[str, str] = Field(default_factory=dict)


class Drug(_Model):
    rxcui: str | None  # None: not in RxNorm (e.g. lumiracoxib); identified by name only
    drug_class: str = Field(alias="class")
    brands: list[str] = Field(default_factory=list)


class AlternativeProduct(_Model):
    rxcui: str
    display: str
    strength_mg: float | None = None


class Mme(_Model):
    description: str
    source: dict[str, str | int]
    factors: dict[str, float]


class ResultKind(_Model):
    kind: Literal["phenotype", "genotype", "haplotype", "therapeutic-implication", "presence"]
    gene: str | None = None
    marker: str | None = None  # for presence results: the allele, e.g. "HLA-B*15:02"
    #: the code's name (LOINC's), where it was confirmed, and reference-lab tests seen sending
    #: results under it (each with the catalog that shows it)
    name: str | None = None
    source: str | None = None
    labs: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _marker(self) -> ResultKind:
        if self.kind == "presence" and not (self.marker and "*" in self.marker):
            raise ValueError("a presence result needs a marker such as 'HLA-B*15:02'")
        return self


class ResultCodes(_Model):
    """How genomic result Observations are recognised (``result_codes.json``)."""

    description: str = ""
    source: str = ""
    codes: dict[str, ResultKind]
    gene_component_codes: list[str]
    implication_component_codes: list[str]
    genes: dict[str, str]
    phenotype_answers: dict[str, str]
    #: answer codes of the pre-2019 vocabulary ("Extensive metabolizer"), by their wording;
    #: each is also in ``phenotype_answers`` with today's term
    legacy_answers: dict[str, str] = Field(default_factory=dict)
    #: CPIC's "Likely ..." terms -> the phenotype whose advice they take where the knowledge
    #: has no row of their own for the gene, and the source of that reading
    qualified_phenotypes: dict[str, str] = Field(default_factory=dict)
    qualified_phenotypes_source: str = ""

    @model_validator(mode="after")
    def _legacy_mapped(self) -> ResultCodes:
        unmapped = set(self.legacy_answers) - set(self.phenotype_answers)
        if unmapped:
            raise ValueError(f"legacy answers without a current term: {sorted(unmapped)}")
        return self


class NotCoveredPair(_Model):
    gene: str
    drugs: list[str]
    reason: str = Field(min_length=10)


class NotCovered(_Model):
    """Genes considered and deliberately not used (``not_covered.json``)."""

    description: str
    source: dict[str, str]
    pairs: list[NotCoveredPair]


class RuleSource(_Model):
    organization: Literal["CPIC", "DPWG", "FDA"]
    title: str
    url: str = Field(pattern=r"^https://")
    year: int
    pmid: str | None = Field(default=None, pattern=r"^\d+$")
    #: where in the source the rule rests (a table, a section), shown on the card
    section: str | None = None


class LabelRule(_Model):
    """A label rule that applies whatever the genotype (``rules/label_rules.json``)."""

    id: str
    drug: str
    max_age_years: float
    reason_words: list[str] = Field(default_factory=list)
    indicator: Literal["critical", "warning", "info"]
    summary: str = Field(max_length=139)
    text: str = Field(min_length=10)
    source: RuleSource


class UnclearRule(_Model):
    """A card for a result on file that does not settle the allele (or gene) a drug's
    guideline depends on (``rules/unclear_results.json``)."""

    id: str
    drug: str
    marker: str
    indicator: Literal["critical", "warning", "info"]
    summary: str = Field(max_length=139)
    text: str = Field(min_length=10)
    test: str  # a key of rules/pretest.json "tests": the test the card suggests ordering
    source: RuleSource


class PretestDrug(_Model):
    test: str
    default: bool
    summary: str = Field(max_length=139)
    text: str = Field(min_length=10)
    source: RuleSource


class PretestTest(_Model):
    loinc: str | None
    display: str
    source: str


class Pretest(_Model):
    description: str
    tests: dict[str, PretestTest]
    drugs: dict[str, PretestDrug]


class DoseChange(_Model):
    basis: Literal["ordered", "lowest_start"]
    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)


class DrugDosing(_Model):
    low_dose_max_mg_per_day: float | None = None
    lowest_start_mg_per_day: float | None = None
    source: str


class Dosing(_Model):
    description: str
    drugs: dict[str, DrugDosing]
    dose_changes: dict[str, DoseChange]


class LastingEffect(_Model):
    """How long an inhibitor's effect lasts after the last dose (a long-lived active
    metabolite), from its label; an inhibitor without one stops acting when it is stopped."""

    days: int = Field(gt=0)
    text: str = Field(min_length=3)  # as the card says it: "about five weeks"
    source: str = Field(min_length=10)
    url: str = Field(pattern=r"^https://")


class Inhibitor(_Model):
    strength: Literal["strong", "moderate"]
    rxcui: str | None = None
    lasts_after_stopping: LastingEffect | None = None


class Inhibitors(_Model):
    """CYP2D6 inhibitors (``interactions/cyp2d6_inhibitors.json``)."""

    description: str
    source: dict[str, str]
    multipliers: dict[str, float]
    inhibitors: dict[str, Inhibitor]
    products: dict[str, str]
    brands: dict[str, str] = {}  # brand name (lower case) -> inhibitor
