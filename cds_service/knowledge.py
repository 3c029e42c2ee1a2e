"""The knowledge base: drug-gene recommendations, gene tables and drug codes.

Everything here is data from ``knowledge/`` (see ``knowledge/README.md`` for the schema),
validated when the service starts so a broken file stops the service rather than
producing a wrong card.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Action = Literal["avoid", "alternative", "adjust-dose", "caution", "standard", "no-recommendation"]
Strength = Literal["strong", "moderate", "optional", "none"]

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
    pmid: str = Field(pattern=r"^\d+$")
    url: str = Field(pattern=r"^https://")
    license: str


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

    def matches(self, phenotype: str | None, activity_score: float | None) -> bool:
        if self.phenotype is not None and phenotype != self.phenotype:
            return False
        if self.activity_score_min is not None:
            if activity_score is None:
                return False
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
    guideline: Guideline | None = None  # filled in by the loader from the file's header

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(self.when)


class NoRecommendation(_Model):
    drug: str
    gene: str
    table: str
    reason: str


class GuidelineFile(_Model):
    guideline: Guideline
    recommendations: list[Recommendation] = Field(default_factory=list)
    no_recommendation: list[NoRecommendation] = Field(default_factory=list)


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
    rxcui: str
    drug_class: str = Field(alias="class")
    brands: list[str] = Field(default_factory=list)


class AlternativeProduct(_Model):
    rxcui: str
    display: str


class ResultKind(_Model):
    kind: Literal["phenotype", "genotype", "therapeutic-implication"]
    gene: str | None = None


class ResultCodes(_Model):
    """How genomic result Observations are recognised (``result_codes.json``)."""

    description: str = ""
    source: str = ""
    codes: dict[str, ResultKind]
    gene_component_codes: list[str]
    implication_component_codes: list[str]
    genes: dict[str, str]
    phenotype_answers: dict[str, str]


class KnowledgeError(Exception):
    """The knowledge files are missing or invalid."""


class Knowledge:
    """All knowledge files, loaded and cross-checked once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            manifest = _read(directory / "manifest.json")
            self.version: str = manifest["version"]
            self.drugs: dict[str, Drug] = {
                name: Drug.model_validate(d)
                for name, d in _read(directory / "drugs.json")["drugs"].items()
            }
            products = _read(directory / "rxnorm_products.json")["products"]
            self.products: dict[str, frozenset[str]] = {
                rxcui: frozenset(p["ingredients"]) for rxcui, p in products.items()
            }
            self.product_names: dict[str, str] = {rxcui: p["name"] for rxcui, p in products.items()}
            self.alternative_products: dict[str, AlternativeProduct] = {
                name: AlternativeProduct.model_validate(p)
                for name, p in _read(directory / "alternatives.json")["products"].items()
            }
            self.result_codes = ResultCodes.model_validate(_read(directory / "result_codes.json"))
            self.genes: dict[str, GeneTable] = {
                p.stem: GeneTable.model_validate(_read(p))
                for p in sorted((directory / "genes").glob("*.json"))
            }
            self.guidelines: list[GuidelineFile] = [
                GuidelineFile.model_validate(_read(p))
                for p in sorted((directory / "recommendations").glob("*.json"))
            ]
        except (OSError, KeyError, ValueError, ValidationError) as exc:
            raise KnowledgeError(f"knowledge in {directory} is invalid: {exc}") from exc

        self.recommendations: list[Recommendation] = [
            rec.model_copy(update={"guideline": gf.guideline})
            for gf in self.guidelines
            for rec in gf.recommendations
        ]
        problems = self.check()
        if problems:
            raise KnowledgeError("knowledge check failed:\n  " + "\n  ".join(problems))

    # -- queries used on the hot path -------------------------------------------------

    @cached_property
    def covered_drugs(self) -> frozenset[str]:
        """Drugs with at least one recommendation row (the only ones that can alert)."""
        return frozenset(r.drug for r in self.recommendations)

    @cached_property
    def covered_genes(self) -> frozenset[str]:
        return frozenset(g for r in self.recommendations for g in r.when)

    def recommendations_for(self, drug: str) -> list[Recommendation]:
        return [r for r in self.recommendations if r.drug == drug]

    def no_recommendations(self) -> list[tuple[Guideline, NoRecommendation]]:
        return [(gf.guideline, n) for gf in self.guidelines for n in gf.no_recommendation]

    # -- lint ---------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Consistency rules for the knowledge; an empty list means it is sound."""
        problems: list[str] = []
        ids: set[str] = set()
        for rec in self.recommendations:
            where = f"recommendation {rec.id}"
            if rec.id in ids:
                problems.append(f"{where}: duplicate id")
            ids.add(rec.id)
            if rec.drug not in self.drugs:
                problems.append(f"{where}: drug {rec.drug!r} has no entry in drugs.json")
            for alt in rec.alternatives:
                if alt not in self.alternative_products:
                    problems.append(
                        f"{where}: alternative {alt!r} has no product in alternatives.json"
                    )
            if rec.action in ("avoid", "alternative") and rec.strength == "none":
                problems.append(f"{where}: an {rec.action} row needs a strength")
        for name, drug in self.drugs.items():
            if drug.rxcui not in self.products:
                problems.append(
                    f"drug {name}: ingredient code {drug.rxcui} missing from rxnorm_products.json"
                )
        for gene in self.covered_genes:
            if gene not in self.genes:
                continue  # genes typed directly (HLA) have no allele table
            table = self.genes[gene]
            phenotypes = {b.phenotype for b in table.phenotype_bands} | set(
                table.function_pairs.values()
            )
            for drug in {
                r.drug for r in self.recommendations if gene in r.when and len(r.when) == 1
            }:
                rows = [
                    r for r in self.recommendations if r.drug == drug and list(r.when) == [gene]
                ]
                for phenotype in sorted(phenotypes):
                    if phenotype.startswith(("Indeterminate", "Likely")):
                        continue
                    if not any(_covers(r.when[gene], phenotype, table) for r in rows):
                        problems.append(
                            f"{drug}/{gene}: no row (or explicit no-recommendation) for {phenotype}"
                        )
        return problems


def _covers(cond: GeneCondition, phenotype: str, table: GeneTable) -> bool:
    if cond.phenotype is not None:
        return cond.phenotype == phenotype
    return any(
        b.phenotype == phenotype and cond.matches(None, b.min) for b in table.phenotype_bands
    )


def _read(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a JSON object")
    return data
