"""The shapes of the knowledge files (``knowledge/``; ``knowledge/README.md`` describes them).

Each file is validated against these models when the service starts (``loader``), so a broken
file stops the service rather than producing a wrong card.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["avoid", "alternative", "adjust-dose", "caution", "standard", "no-recommendation"]
#: CPIC's classification; "label" for an FDA label statement (no strength classification);
#: "ungraded" for a DPWG row (DPWG grades no single recommendation: its own classification
#: of the gene-drug pair is ``Recommendation.classification``)
Strength = Literal["strong", "moderate", "optional", "none", "label", "ungraded"]
#: DPWG's classification of genotyping before the drug (its Clinical Implication Score
#: category); "not confirmed" where no source we could read states it for this publication
Classification = Literal["essential", "beneficial", "potentially beneficial", "not confirmed"]
#: The guideline sets a site may choose (``PGX_CDS_GUIDELINES``), by the organisation that
#: writes them; FDA label rows always apply (they cover drugs neither set covers)
GUIDELINE_SETS: dict[str, str] = {"cpic": "CPIC", "dpwg": "DPWG"}
#: The organisations whose rows the knowledge holds
Organization = Literal["CPIC", "DPWG", "FDA"]
_CPIC_ONLY: list[Organization] = ["CPIC"]
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


class AgeLimit(_Model):
    min_age_years: float = 0
    max_age_years: float | None = None  # exclusive
    mg: float = Field(gt=0)

    def covers(self, age: int) -> bool:
        return age >= self.min_age_years and (
            self.max_age_years is None or age < self.max_age_years
        )


class DoseLimit(_Model):
    """Advice that holds only above a dose per interval (DPWG: codeine in ultrarapid
    metabolizers is contraindicated above 20 mg every 6 hours in adults, 10 mg in children
    aged 12 or older). At or below the limit for the patient's age, with the order's dose
    read, the row ``within`` applies instead; an unread dose or age, or an age no limit is
    given for, keeps this row (the more cautious reading)."""

    per_hours: float = Field(gt=0)
    limits: list[AgeLimit] = Field(min_length=1)
    within: str  # id of the row for a dose at or below the limit

    def limit_for(self, ages: tuple[int, int] | None) -> float | None:
        """The lowest limit for every age the patient may be (None: an age without one, or
        the age unknown)."""
        if ages is None:
            return None
        youngest, oldest = ages
        found: list[float] = []
        for age in range(youngest, oldest + 1):
            fits = [lim.mg for lim in self.limits if lim.covers(age)]
            if not fits:
                return None
            found.append(min(fits))
        return min(found)


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
    #: DPWG's classification of the pair (required on DPWG rows, absent on others)
    classification: Classification | None = None
    #: the advice holds above a dose per interval only (see ``DoseLimit``)
    dose_limit: DoseLimit | None = None
    #: a row that applies only through another row's ``dose_limit`` (never matched itself)
    within_dose_limit: bool = False
    guideline: Guideline | None = None  # filled in by the loader from the file's header

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(self.when)


class NoRecommendation(_Model):
    drug: str
    gene: str
    table: str
    reason: str
    #: the guideline says explicitly that no action is needed (DPWG's "no action"), which
    #: decides for a site listing it first; false: it makes no recommendation (CPIC: evidence
    #: insufficient), which leaves the result to the site's next guideline set
    no_action: bool = False


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
    #: what a reader of the rows must know (how phenotypes are assigned, grading)
    notes: list[str] = Field(default_factory=list)
    #: pairs the organisation does not cover (no guideline found): unlike
    #: ``no_recommendation``, these never decide; ``pgx-cds knowledge list`` shows them
    not_covered: list[NotCoveredPair] = Field(default_factory=list)


class PhenotypeBand(_Model):
    phenotype: str
    min: float
    max: float | None = None


class Allele(_Model):
    function: str
    activity_value: str | None = None


class CopyNumber(_Model):
    """A gene whose copies a genotype may not count (CYP2D6: deletions, duplications): a
    later result that finds more copies than an older genotype states is believed."""

    what: str = Field(min_length=10)
    source: str = Field(min_length=10)


class GeneTable(_Model):
    gene: str
    hgnc: str
    source: dict[str, str]
    alleles: dict[str, Allele]
    scoring: Literal["activity_score", "function_pair"]
    phenotype_bands: list[PhenotypeBand] = Field(default_factory=list)
    function_pairs: dict[str, str] = Field(default_factory=dict)
    #: set where a genotype may not count the gene's copies (``gene_decision``)
    copy_number: CopyNumber | None = None


class Drug(_Model):
    rxcui: str | None  # None: not in RxNorm (e.g. lumiracoxib); identified by name only
    drug_class: str = Field(alias="class")
    brands: list[str] = Field(default_factory=list)


class AlternativeProduct(_Model):
    rxcui: str
    display: str
    strength_mg: float | None = None


class MmeSource(_Model):
    name: str  # how a card names it: 'CDC 2022'
    title: str
    url: str = Field(pattern=r"^https://")
    year: int


class MmeFactor(_Model):
    """One opioid's conversion factor (MME = amount x factor), or null with the reason."""

    factor: float | None = Field(gt=0)
    per: Literal["mg", "mcg", "mcg/hr"] = "mg"
    route: str = "oral"
    source: str | None = None  # a key of ``Mme.sources``
    note: str | None = None
    reason: str | None = None  # why there is no factor

    @model_validator(mode="after")
    def _sourced(self) -> MmeFactor:
        if self.factor is not None and not self.source:
            raise ValueError("a factor needs its source")
        if self.factor is None and not self.reason:
            raise ValueError("an opioid without a factor needs the reason")
        return self


class Mme(_Model):
    """Morphine milligram equivalent factors (``rules/mme.json``)."""

    description: str
    sources: dict[str, MmeSource]
    factors: dict[str, MmeFactor]

    def oral_mg(self, drug: str) -> float | None:
        """The factor per oral mg of ``drug``, or None (no factor, or one for another form)."""
        entry = self.factors.get(drug)
        if entry is None or entry.factor is None or entry.per != "mg" or entry.route != "oral":
            return None
        return entry.factor

    def cited(self, drug: str) -> str:
        """Where the factor of ``drug`` comes from, in a few words ('CDC 2022')."""
        entry = self.factors.get(drug)
        source = self.sources.get(entry.source or "") if entry else None
        return source.name if source else "no source"


class ProductIngredient(_Model):
    """One ingredient of a product as its RxNorm name states it."""

    name: str  # the ingredient ('codeine'; a drugs.json key where covered)
    substance: str  # what the strength is of ('codeine phosphate')
    strength: float | None = None
    unit: str | None = None  # 'MG', 'MG/ML', ...


class ProductForm(_Model):
    """A product's ingredients, dose form and route (``rxnorm_forms.json``)."""

    ingredients: list[ProductIngredient] = Field(min_length=1)
    form: str | None = None  # 'Oral Tablet'
    route: str | None = None  # 'oral', 'injection', ...
    prefix: str | None = None  # '12 HR' (release), '8 ML' (volume)
    abuse_deterrent: bool = False
    brand: str | None = None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(i.name for i in self.ingredients)

    def strength_mg(self, ingredient: str) -> float | None:
        """mg of ``ingredient`` per tablet, capsule or suppository; None for other units."""
        for i in self.ingredients:
            if i.name == ingredient and i.unit == "MG":
                return i.strength
        return None


class CodedProduct(_Model):
    """A drug code beyond RxNorm (ATC, SNOMED CT / dm+d, a site's own): what it contains.

    ``ingredients`` names every ingredient (a covered one by its ``drugs.json`` key, an
    interacting one by its ``interactions`` key, others by name: 'acetaminophen');
    ``strengths`` gives mg per tablet or capsule where the code's product states it."""

    name: str
    ingredients: list[str] = Field(min_length=1)
    strengths: dict[str, float] = Field(default_factory=dict)
    #: what the code stands for: an ingredient or class (ATC), a product ('dm+d VMP')
    kind: str = "product"
    source: str  # a key of DrugCodes.sources, or 'site' for a site's own code

    @model_validator(mode="after")
    def _strengths_of_ingredients(self) -> CodedProduct:
        extra = set(self.strengths) - set(self.ingredients)
        if extra:
            raise ValueError(f"{self.name}: strengths of ingredients it lacks: {sorted(extra)}")
        return self


class DrugCodeSystem(_Model):
    name: str  # how the trace and cards name it: 'ATC', 'SNOMED CT'
    uris: list[str] = Field(min_length=1)


class DrugCodes(_Model):
    """``drug_codes.json`` (hand-written: ATC per ingredient and combination) and
    ``snomed_products.json`` (built by ``scripts/build_drug_codes.py``): codes by system."""

    description: str
    systems: dict[str, DrugCodeSystem] = Field(default_factory=dict)
    sources: dict[str, str]
    codes: dict[str, dict[str, CodedProduct]]


class ResultKind(_Model):
    kind: Literal[
        "phenotype",
        "genotype",
        "haplotype",
        "therapeutic-implication",
        "presence",
        "variant",  # a variant Observation (Genomics Reporting IG): read for RYR1, CACNA1S
        "diagnostic-implication",  # its clinical significance (Genomics Reporting IG 3.0+)
    ]
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
    #: where in the source the rule rests (a table, a label section), shown on the card
    section: str | None = None
    date: str | None = Field(default=None, pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$")
    #: what is known about the link (e.g. a URL that follows the publisher's pattern, unread)
    url_note: str | None = None


#: What a label rule needs beside the patient's age: a finding of ``LabelRules.findings``,
#: or a prescription opioid cough-and-cold product (``COUGH_COLD``).
COUGH_COLD = "cough-cold-product"


class LabelRule(_Model):
    """A label rule that applies whatever the genotype (``rules/label_rules.json``): the
    patient's age is in [``min_age_years``, ``max_age_years``) (either end open when None)
    and, where ``requires`` is set, one of its findings is on the chart or in the order."""

    id: str
    drug: str
    min_age_years: float | None = None
    max_age_years: float | None = None
    requires: list[str] = Field(default_factory=list)
    indicator: Literal["critical", "warning", "info"]
    summary: str = Field(max_length=139)
    #: the summary when the inputs leave the rule open (a partial birth date, a reason that
    #: suggests the finding without proving it): the card is then at most a warning
    possible_summary: str = Field(max_length=139)
    text: str = Field(min_length=10)
    source: RuleSource

    @model_validator(mode="after")
    def _bounded(self) -> LabelRule:
        if self.min_age_years is None and self.max_age_years is None and not self.requires:
            raise ValueError(f"label rule {self.id}: needs an age limit or a finding")
        return self


class CodeSystem(_Model):
    """A code system by its short name in ``label_rules.json``: its display name and every
    URI clients send for it (the canonical one first, then OIDs)."""

    name: str
    uris: list[str] = Field(min_length=1)


class CodeSet(_Model):
    """Codes of one system that stand for a finding, with where they come from.

    Codes are compared without dots and case (ICD-10-CM ``G47.33`` and ``G4733`` are one
    code); a prefix matches every code that starts with it, except those ``excluding``
    (prefixes too)."""

    system: str  # a key of LabelRules.systems
    codes: list[str] = Field(default_factory=list)
    prefixes: list[str] = Field(default_factory=list)
    excluding: list[str] = Field(default_factory=list)
    what: str = Field(min_length=5)  # e.g. "ICD-10-CM category E66 excluding E66.3"
    source: str = Field(min_length=5)
    confidence: str = "confirmed"

    @model_validator(mode="after")
    def _something(self) -> CodeSet:
        if not self.codes and not self.prefixes:
            raise ValueError(f"code set {self.what!r}: no codes or prefixes")
        return self


class ObservationCodes(_Model):
    """A status recorded as an Observation (breastfeeding status, LOINC 63895-7): its
    codes, the answers that say yes or no, and how old a record may be to count."""

    codes: list[CodeSet] = Field(min_length=1)
    positive: list[CodeSet] = Field(min_length=1)
    negative: list[CodeSet] = Field(default_factory=list)
    recent_days: int = Field(gt=0)
    recent_days_source: str = Field(min_length=5)


class Finding(_Model):
    """Something on the chart or in the order that a label rule depends on (a tonsillectomy,
    obesity, breastfeeding, ...), and how to recognise it."""

    label: str  # as the card names it: "tonsillectomy or adenoidectomy"
    description: str
    #: where the service looks for it besides the order's reasons
    chart: list[Literal["procedures", "conditions", "observations"]] = Field(default_factory=list)
    codes: list[CodeSet] = Field(min_length=1)
    #: codes that suggest the finding in an order's reason without proving it (the usual
    #: indication of the surgery): the rule's card is then at most a warning
    possible_codes: list[CodeSet] = Field(default_factory=list)
    #: whole words in any case ("tonsillectomy"), and case-sensitive abbreviations ("T&A"),
    #: never inside another word; a negated mention ("no obesity") does not count
    words: list[str] = Field(default_factory=list)
    abbreviations: list[str] = Field(default_factory=list)
    #: a Procedure counts when performed within this many days (or planned, or in progress)
    recent_days: int | None = Field(default=None, gt=0)
    recent_days_source: str | None = None
    observation: ObservationCodes | None = None


class CoughCold(_Model):
    """Prescription opioid cough-and-cold products (FDA, January 2018): an opioid with an
    antitussive, expectorant, decongestant or antihistamine. ``scripts/build_knowledge.py``
    marks the RxNorm products that contain one of ``opioids`` and one of ``ingredients``;
    an order without a known code counts when its text names one of them or ``words``."""

    description: str
    source: str
    opioids: list[str] = Field(min_length=1)
    ingredients: list[str] = Field(min_length=1)
    words: list[str] = Field(default_factory=list)


class LabelRules(_Model):
    """``rules/label_rules.json``: the rules, the findings they depend on, the code systems."""

    description: str
    systems: dict[str, CodeSystem]
    findings: dict[str, Finding]
    cough_cold: CoughCold
    rules: list[LabelRule]

    @model_validator(mode="after")
    def _consistent(self) -> LabelRules:
        problems = []
        for name, finding in self.findings.items():
            sets = [*finding.codes, *finding.possible_codes]
            if finding.observation is not None:
                o = finding.observation
                sets += [*o.codes, *o.positive, *o.negative]
            problems += [
                f"finding {name}: unknown code system {s.system!r}"
                for s in sets
                if s.system not in self.systems
            ]
            if "procedures" in finding.chart and finding.recent_days is None:
                problems.append(f"finding {name}: read from procedures needs recent_days")
            if "observations" in finding.chart and finding.observation is None:
                problems.append(f"finding {name}: read from observations needs observation")
        for rule in self.rules:
            problems += [
                f"label rule {rule.id}: unknown finding {r!r}"
                for r in rule.requires
                if r != COUGH_COLD and r not in self.findings
            ]
        ids = [r.id for r in self.rules]
        problems += [f"label rule {i}: duplicate id" for i in sorted(set(ids)) if ids.count(i) > 1]
        if problems:
            raise ValueError("; ".join(problems))
        return self


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
    #: "ordered": a share of the ordered dose; "lowest_start": of the drug's lowest starting
    #: dose; "maintenance": of the ordered (maintenance) dose, the first (loading) dose
    #: unchanged (phenytoin)
    basis: Literal["ordered", "lowest_start", "maintenance"]
    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)


class DrugDosing(_Model):
    low_dose_max_mg_per_day: float | None = None
    #: the organisations whose dose advice is written for higher doses than the low-dose
    #: limit (CPIC's tricyclic advice): their rows become a caution at or below it
    low_dose_guidelines: list[Organization] = Field(default_factory=lambda: _CPIC_ONLY.copy())
    lowest_start_mg_per_day: float | None = None
    source: str


class Dosing(_Model):
    description: str
    drugs: dict[str, DrugDosing]
    dose_changes: dict[str, DoseChange]


class FormerRule(_Model):
    """How CPIC called a genotype's phenotype before today's tables
    (``rules/former_phenotypes.json``): today's table with these values or bands changed."""

    id: str
    gene: str
    in_use: str
    what: str = Field(min_length=10)
    #: activity value per copy of every allele of this function (e.g. decreased: 0.5)
    activity_values_by_function: dict[str, float] = Field(default_factory=dict)
    #: activity value per copy of single alleles (applied after the function's)
    activity_values: dict[str, float] = Field(default_factory=dict)
    phenotype_bands: list[PhenotypeBand] | None = None
    function_pairs: dict[str, str] = Field(default_factory=dict)
    source: dict[str, str]

    @model_validator(mode="after")
    def _changes_something(self) -> FormerRule:
        if not (
            self.activity_values_by_function
            or self.activity_values
            or self.phenotype_bands
            or self.function_pairs
        ):
            raise ValueError(f"former rule {self.id}: changes nothing")
        if not {"citation", "url"} <= set(self.source):
            raise ValueError(f"former rule {self.id}: its source needs a citation and a url")
        return self


class FormerRules(_Model):
    description: str
    rules: list[FormerRule]
