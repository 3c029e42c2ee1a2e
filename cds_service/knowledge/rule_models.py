"""Models of the rule files about what acts on a phenotype: the inhibitors of each enzyme
(``interactions/<gene>_inhibitors.json``), the direction of phenotypes
(``rules/phenotype_order.json``) and how RYR1/CACNA1S results are read
(``rules/mhs_variants.json``). Split from ``models`` by job (no module over 700 lines)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .models import _Model


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
    #: where this inhibitor's strength was read, where it is not the file's own source
    source: str | None = None


class Inhibitors(_Model):
    """Inhibitors of one enzyme (``interactions/<gene>_inhibitors.json``) and how they
    change the phenotype that acts (phenoconversion): for a gene scored by activity score,
    the score is multiplied (``multipliers``, per strength) and the functional phenotype read
    from the gene's CPIC bands; for one scored by function pairs, ``phenotype_shifts`` names
    the functional phenotype per strength and genetic phenotype."""

    gene: str
    description: str
    source: dict[str, str]
    #: the conversion's source as a card names it ("Borges et al. 2010")
    cited: str = Field(min_length=3)
    multipliers: dict[str, float] = Field(default_factory=dict)
    phenotype_shifts: dict[str, dict[str, str]] = Field(default_factory=dict)
    inhibitors: dict[str, Inhibitor]
    products: dict[str, str] = Field(default_factory=dict)
    brands: dict[str, str] = Field(default_factory=dict)  # brand (lower case) -> inhibitor

    @model_validator(mode="after")
    def _converts(self) -> Inhibitors:
        for name, inhibitor in self.inhibitors.items():
            if (
                inhibitor.strength not in self.multipliers
                and inhibitor.strength not in self.phenotype_shifts
            ):
                raise ValueError(
                    f"{self.gene} inhibitor {name}: no multiplier or phenotype shift for "
                    f"{inhibitor.strength!r}"
                )
        return self


class PhenotypeDirection(_Model):
    """How far a phenotype is from normal function, and which way (``rules/
    phenotype_order.json``): poor metabolizer (-1, 2), intermediate (-1, 1), normal (0, 0),
    rapid (1, 1), ultrarapid (1, 2)."""

    direction: Literal[-1, 0, 1]
    distance: int = Field(ge=0)


class PhenotypeOrder(_Model):
    description: str
    source: str = Field(min_length=10)
    phenotypes: dict[str, PhenotypeDirection]

    @model_validator(mode="after")
    def _one_normal(self) -> PhenotypeOrder:
        if not any(d.direction == 0 for d in self.phenotypes.values()):
            raise ValueError("phenotype order: no normal phenotype (direction 0)")
        return self


class MhsVariant(_Model):
    """One RYR1 or CACNA1S variant CPIC classifies (``rules/mhs_variants.json``)."""

    c: str = Field(pattern=r"^c\.")  # c. HGVS on the gene's transcript
    rsid: str | None = Field(default=None, pattern=r"^rs\d+$")
    g: str | None = None  # GRCh38 g. HGVS
    #: CPIC's allele function: MH-associated, uncertain function, normal function
    class_: Literal["mhs", "uncertain", "normal"] = Field(alias="class")
    note: str | None = None


class MhsRules(_Model):
    """How RYR1 and CACNA1S results are read (``rules/mhs_variants.json``)."""

    description: str
    source: dict[str, str]
    genes: dict[str, dict[str, str]]
    phenotype: str
    significance: dict[str, str]
    phenotype_phrases: list[str] = Field(min_length=1)
    no_card: dict[str, str]
    variants: dict[str, list[MhsVariant]]

    @model_validator(mode="after")
    def _known_genes(self) -> MhsRules:
        unknown = set(self.variants) - set(self.genes)
        if unknown:
            raise ValueError(f"mhs variants for genes without an entry: {sorted(unknown)}")
        return self
