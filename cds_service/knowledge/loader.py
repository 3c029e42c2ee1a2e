"""The knowledge base: drug-gene recommendations, gene tables and drug codes.

Everything here is data from ``knowledge/`` (see ``knowledge/README.md`` for the schema),
validated when the service starts so a broken file stops the service rather than
producing a wrong card.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..core.files import MAX_KNOWLEDGE_BYTES, read_config
from ..core.remembered import Remembered
from .checks import check
from .models import (
    GUIDELINE_SETS,
    AlternativeProduct,
    CodedProduct,
    Dosing,
    Drug,
    DrugCodes,
    FormerRules,
    GeneCondition,
    GeneTable,
    Guideline,
    GuidelineFile,
    LabelRule,
    LabelRules,
    LabelStatement,
    Mme,
    NoRecommendation,
    NotCovered,
    Pretest,
    ProductForm,
    Recommendation,
    ResultCodes,
    UnclearRule,
)
from .rule_models import Inhibitors, MhsRules, PhenotypeOrder


class KnowledgeError(Exception):
    """The knowledge files are missing or invalid."""


class Knowledge:
    """All knowledge files, loaded and cross-checked once.

    ``guidelines`` are the guideline sets the site chose (``PGX_CDS_GUIDELINES``: ``cpic``,
    ``dpwg``), in order: only their rows (and FDA's) reach a patient, and for each drug and
    result the first set with a row, or an explicit "no action", decides
    (``clinical/recommendations.py``). Every file is loaded and checked whatever the choice;
    ``all_recommendations`` and ``no_recommendations(every=True)`` hold both sets.
    ``drug_codes`` are a site's own drug codes (``"system|code"`` -> what the product holds).
    """

    def __init__(
        self,
        directory: Path,
        site_codes: Path | None = None,
        extra_codes: dict[str, Any] | None = None,
        *,
        guidelines: tuple[str, ...] | list[str] = ("cpic",),
        drug_codes: dict[str, Any] | None = None,
    ) -> None:
        self.directory = directory
        chosen = tuple(guidelines)
        wrong = [g for g in chosen if g not in GUIDELINE_SETS]
        if wrong or not chosen or len(set(chosen)) != len(chosen):
            raise KnowledgeError(
                f"guidelines {','.join(chosen) or '(none)'}: an ordered list of "
                f"{' and '.join(GUIDELINE_SETS)}, each at most once"
            )
        #: the chosen sets, and the organisations whose rows apply, first decides (FDA last)
        self.guideline_sets: tuple[str, ...] = chosen
        self.precedence: tuple[str, ...] = (*(GUIDELINE_SETS[g] for g in chosen), "FDA")
        #: drug -> (the organisation whose rows stand in for a chosen set's rows not carried
        #: yet, why): ``guideline_gaps.json`` (never silent for want of our rows)
        self.stand_ins: dict[str, tuple[str, str]] = {}
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
            #: prescription opioid cough-and-cold products (marked by build_knowledge.py)
            self.cough_cold_products: frozenset[str] = frozenset(
                rxcui for rxcui, p in products.items() if p.get("cough_cold") is True
            )
            #: each product's ingredients, form and route, where its RxNorm name says them
            self.product_forms: dict[str, ProductForm] = {
                rxcui: ProductForm.model_validate(p)
                for rxcui, p in _read(directory / "rxnorm_forms.json")["products"].items()
            }
            self.alternative_products: dict[str, AlternativeProduct] = {
                name: AlternativeProduct.model_validate(p)
                for name, p in _read(directory / "alternatives.json")["products"].items()
            }
            codes = _read(directory / "result_codes.json")
            if site_codes is not None:
                # A site's local codes: {"codes": {"system|code": {"kind": ..., "gene": ...}}}
                codes["codes"] = {**codes["codes"], **_read(site_codes)["codes"]}
            if extra_codes:  # the same mapping, from the site configuration file
                codes["codes"] = {**codes["codes"], **extra_codes}
            self.result_codes = ResultCodes.model_validate(codes)
            self.genes: dict[str, GeneTable] = {
                p.stem: GeneTable.model_validate(_read(p))
                for p in sorted((directory / "genes").glob("*.json"))
            }
            self.not_covered = NotCovered.model_validate(_read(directory / "not_covered.json"))
            #: inhibitors per enzyme (gene), one file each (phenoconversion)
            self.interactions: dict[str, Inhibitors] = {}
            for path in sorted((directory / "interactions").glob("*_inhibitors.json")):
                table = Inhibitors.model_validate(_read(path))
                if table.gene in self.interactions:
                    raise ValueError(f"{path.name}: a second inhibitor table for {table.gene}")
                self.interactions[table.gene] = table
            self.mhs = MhsRules.model_validate(_read(directory / "rules" / "mhs_variants.json"))
            self.phenotype_order = PhenotypeOrder.model_validate(
                _read(directory / "rules" / "phenotype_order.json")
            )
            self.label_rule_file = LabelRules.model_validate(
                _read(directory / "rules" / "label_rules.json")
            )
            self.label_rules: list[LabelRule] = list(self.label_rule_file.rules)
            self.pretest = Pretest.model_validate(_read(directory / "rules" / "pretest.json"))
            self.unclear_rules: list[UnclearRule] = [
                UnclearRule.model_validate(r)
                for r in _read(directory / "rules" / "unclear_results.json")["rules"]
            ]
            self.dosing = Dosing.model_validate(_read(directory / "rules" / "dosing.json"))
            for gap in _read(directory / "guideline_gaps.json")["gaps"]:
                stand_in = GUIDELINE_SETS[gap["stand_in"]]
                if gap["guideline_set"] in chosen and stand_in not in self.precedence:
                    for drug in gap["drugs"]:
                        self.stand_ins[drug] = (stand_in, str(gap["why"]))
            self.mme = Mme.model_validate(_read(directory / "rules" / "mme.json"))
            self.former_rules = FormerRules.model_validate(
                _read(directory / "rules" / "former_phenotypes.json")
            )
            self.guidelines: list[GuidelineFile] = [
                GuidelineFile.model_validate(_read(p))
                for p in sorted((directory / "recommendations").glob("*.json"))
            ]
            self.drug_code_files = [
                DrugCodes.model_validate(_read(directory / name))
                for name in ("drug_codes.json", "snomed_products.json")
            ]
            site_products = {
                key: CodedProduct.model_validate({"source": "site", **value})
                for key, value in (drug_codes or {}).items()
            }
        except (OSError, KeyError, ValueError, ValidationError) as exc:
            raise KnowledgeError(f"knowledge in {directory} is invalid: {exc}") from exc
        self.coded_products, self.code_systems = _code_index(self.drug_code_files, site_products)

        #: every row of every guideline file, whatever the site chose
        self.all_recommendations: list[Recommendation] = [
            rec.model_copy(update={"guideline": gf.guideline})
            for gf in self.guidelines
            for rec in gf.recommendations
        ]
        #: the rows of the chosen guideline sets and FDA's: the only ones that reach a patient
        self.recommendations: list[Recommendation] = [
            r
            for r in self.all_recommendations
            if self.organization(r) in self.precedence_for(r.drug)
        ]
        problems = self.check()
        if problems:
            raise KnowledgeError("knowledge check failed:\n  " + "\n  ".join(problems))

    # -- queries used on the hot path -------------------------------------------------

    def remembered(self, what: str) -> Remembered[Any]:
        """Answers worked out from this knowledge alone and kept with it, by ``what`` they
        answer (what a medication text names, a row's indicator floor): the same questions
        come back call after call. Kept here, not in a module-wide cache keyed by the
        knowledge, so that they go with this knowledge and no other shares them."""
        return self._remembered.setdefault(what, Remembered())

    @cached_property
    def _remembered(self) -> dict[str, Remembered[Any]]:
        return {}

    @cached_property
    def covered_drugs(self) -> frozenset[str]:
        """Drugs with at least one recommendation row (the only ones that can alert)."""
        return frozenset(r.drug for r in self.recommendations)

    @cached_property
    def covered_genes(self) -> frozenset[str]:
        """Genes and HLA markers that some recommendation depends on."""
        return frozenset(g for r in self.recommendations for g in r.when)

    @cached_property
    def gene_symbols(self) -> frozenset[str]:
        return frozenset(self.result_codes.genes.values())

    @cached_property
    def gene_patterns(self) -> tuple[tuple[str, re.Pattern[str]], ...]:
        """Each gene symbol and the pattern that finds it as a word in free text."""
        return tuple(
            (s, re.compile(rf"(?<![A-Za-z0-9-]){re.escape(s)}(?![A-Za-z0-9-])"))
            for s in sorted(self.gene_symbols)
        )

    @cached_property
    def recommendations_by_drug(self) -> dict[str, list[Recommendation]]:
        out: dict[str, list[Recommendation]] = {}
        for r in self.recommendations:
            out.setdefault(r.drug, []).append(r)
        return out

    @cached_property
    def continuing_drugs(self) -> frozenset[str]:
        """Drugs with a continuing-therapy row (the medication history can change their
        advice: CPIC's cautious continuation after more than 3 months)."""
        return frozenset(r.drug for r in self.recommendations if r.continuing_over_days)

    @cached_property
    def continuing_genes(self) -> frozenset[str]:
        """Genes and markers whose results a continuing-therapy row depends on."""
        return frozenset(g for r in self.recommendations if r.continuing_over_days for g in r.when)

    @cached_property
    def phenoconversion_genes(self) -> frozenset[str]:
        return frozenset(self.interactions)  # (the genes with an inhibitor table)

    @cached_property
    def inhibitor_by_rxcui(self) -> dict[str, str]:
        """RxNorm codes (products and ingredients) of the inhibitors of every enzyme ->
        ingredient (one drug may inhibit several: fluconazole)."""
        out: dict[str, str] = {}
        for table in self.interactions.values():
            out.update({v.rxcui: k for k, v in table.inhibitors.items() if v.rxcui})
        for table in self.interactions.values():
            out.update(table.products)  # a product code decides first
        return out

    @cached_property
    def inhibitor_names(self) -> re.Pattern[str]:
        """One pattern for every inhibitor's name and brand (one pass over a medication's
        text); ``inhibitor_named`` says which inhibitor a match names."""
        names = set(self.inhibitor_named)
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        return re.compile(r"\b(?:" + alternatives + r")\b")

    @cached_property
    def inhibitor_ingredients(self) -> frozenset[str]:
        """Every enzyme's inhibitors (ingredients)."""
        return frozenset(n for table in self.interactions.values() for n in table.inhibitors)

    @cached_property
    def inhibitor_named(self) -> dict[str, str]:
        """A name or brand (lower case) -> the inhibitor it names."""
        out: dict[str, str] = {}
        for table in self.interactions.values():
            out.update({n: n for n in table.inhibitors})
            out.update(table.brands)
        return out

    def direction(self, phenotype: str) -> tuple[int, int] | None:
        """(direction, distance from normal) of a phenotype (rules/phenotype_order.json)."""
        found = self.phenotype_order.phenotypes.get(phenotype)
        return (found.direction, found.distance) if found else None

    @cached_property
    def mhs_variants(self) -> dict[str, dict[str, str]]:
        """Per MHS gene, each variant's identifiers (c. HGVS, rsID, g. HGVS; lower case) ->
        CPIC's class ('mhs', 'uncertain', 'normal')."""
        out: dict[str, dict[str, str]] = {}
        for gene, variants in self.mhs.variants.items():
            found = out.setdefault(gene, {})
            for v in variants:
                for key in (v.c, v.rsid, v.g):
                    if key:
                        found[key.lower()] = v.class_
        return out

    @cached_property
    def mhs_gene_words(self) -> re.Pattern[str]:
        """The MHS genes' symbols as words in lower-case text ("RYR1 Uncertain ...")."""
        names = "|".join(re.escape(g.lower()) for g in sorted(self.mhs.genes))
        return re.compile(r"(?<![a-z0-9])(?:" + names + r")(?![a-z0-9])")

    def copy_number_gene(self, gene: str) -> bool:
        table = self.genes.get(gene)  # (may a genotype leave its copies uncounted: CYP2D6)
        return table is not None and table.copy_number is not None

    @cached_property
    def row_phenotypes(self) -> dict[str, frozenset[str]]:
        """Per gene (or HLA marker), the phenotypes its recommendation rows name."""
        out: dict[str, set[str]] = {}
        for r in self.recommendations:
            for gene, cond in r.when.items():
                if cond.phenotype:
                    out.setdefault(gene, set()).add(cond.phenotype)
        return {g: frozenset(p) for g, p in out.items()}

    def acting_phenotype(self, gene: str, phenotype: str) -> str:
        """The phenotype whose advice a reported one takes: CPIC's "Likely poor metabolizer"
        is read as a poor metabolizer where no row names "Likely" for the gene (CYP2D6,
        CYP2C9); where rows do (CYP2C19), it stays itself."""
        named = self.result_codes.qualified_phenotypes.get(phenotype)
        if named is None or phenotype in self.row_phenotypes.get(gene, frozenset()):
            return phenotype
        return named

    @cached_property
    def score_conditions(self) -> dict[str, tuple[GeneCondition, ...]]:
        """Per gene, the distinct row conditions keyed by activity score (CYP2C9's rows)."""
        out: dict[str, list[GeneCondition]] = {}
        for r in self.recommendations:
            for gene, cond in r.when.items():
                if cond.activity_score_min is not None and cond not in out.get(gene, []):
                    out.setdefault(gene, []).append(cond)
        return {g: tuple(c) for g, c in out.items()}

    @cached_property
    def markers(self) -> frozenset[str]:
        """Allele markers (``HLA-B*15:02``) that recommendations depend on."""
        return frozenset(g for g in self.covered_genes if "*" in g)

    def band(self, gene: str, phenotype: str) -> tuple[float, float | None] | None:
        """The activity-score range a phenotype stands for (CPIC bands), if the gene has one."""
        table = self.genes.get(gene)
        for b in table.phenotype_bands if table else []:
            if b.phenotype == phenotype:
                return b.min, b.max
        return None

    @cached_property
    def unclear_rules_by_drug(self) -> dict[str, list[UnclearRule]]:
        out: dict[str, list[UnclearRule]] = {}
        for rule in self.unclear_rules:
            out.setdefault(rule.drug, []).append(rule)
        return out

    def precedence_for(self, drug: str) -> tuple[str, ...]:
        """The organisations whose rows apply to ``drug``, first decides: the chosen sets,
        a stand-in for a chosen set's rows not carried yet (``stand_ins``), FDA last."""
        if drug not in self.stand_ins:
            return self.precedence
        return (*self.precedence[:-1], self.stand_ins[drug][0], "FDA")

    def recommendations_for(self, drug: str) -> list[Recommendation]:
        return self.recommendations_by_drug.get(drug, [])

    @staticmethod
    def organization(rec: Recommendation) -> str:
        return rec.guideline.organization if rec.guideline else "?"

    @cached_property
    def rows_by_id(self) -> dict[str, Recommendation]:
        """Every row by id, chosen or not (a dose limit's ``within`` row, an old card's topic)."""
        return {r.id: r for r in self.all_recommendations}

    @cached_property
    def no_action(self) -> dict[tuple[str, str], list[tuple[Guideline, NoRecommendation]]]:
        """(drug, organisation) -> the genes a chosen guideline reviewed without advice for
        the drug ("no action" for DPWG), with the entry: an explicit "no action" decides."""
        out: dict[tuple[str, str], list[tuple[Guideline, NoRecommendation]]] = {}
        for guideline, item in self.no_recommendations():
            if item.no_action:
                out.setdefault((item.drug, guideline.organization), []).append((guideline, item))
        return out

    @cached_property
    def chosen_elsewhere(self) -> dict[str, list[Guideline]]:
        """Per drug, the guidelines with rows for it that the site did not choose (for the
        trace: 'CPIC 2020 has rows for celecoxib; not chosen by this site')."""
        out: dict[str, list[Guideline]] = {}
        for r in self.all_recommendations:
            g = r.guideline
            if g is not None and g.organization not in self.precedence_for(r.drug):
                known = out.setdefault(r.drug, [])
                known += [] if g in known else [g]
        return out

    def coded_product(self, system: str, code: str) -> CodedProduct | None:
        """What a drug code of a system beyond RxNorm stands for (ATC, SNOMED CT / dm+d, a
        site's own), or None."""
        return self.coded_products.get((system, _code_key(code)))

    def label_statements_for(self, drug: str, gene: str, phenotype: str) -> list[LabelStatement]:
        return [
            s for s in self._label_statements.get((drug, gene), ()) if phenotype in s.phenotypes
        ]

    @cached_property
    def _label_statements(self) -> dict[tuple[str, str], list[LabelStatement]]:
        """The label statements by drug and gene, in the files' order."""
        out: dict[tuple[str, str], list[LabelStatement]] = {}
        for gf in self.guidelines:
            for s in gf.label_statements:
                out.setdefault((s.drug, s.gene), []).append(s)
        return out

    def no_recommendations(self, every: bool = False) -> list[tuple[Guideline, NoRecommendation]]:
        """The pairs reviewed without a recommendation: the chosen guidelines' (and FDA's),
        or with ``every`` all files'."""
        return [
            (gf.guideline, n)
            for gf in self.guidelines
            if every or gf.guideline.organization in self.precedence
            for n in gf.no_recommendation
        ]

    # -- lint ---------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Consistency rules for the knowledge (every file, whatever the site chose); an
        empty list means it is sound (``checks.check``)."""
        return check(self)


def _code_key(code: str) -> str:
    """Codes compared without spaces or case (ATC 'n02aj06' is 'N02AJ06')."""
    return "".join(code.split()).upper()


def _code_index(
    files: list[DrugCodes], site: dict[str, CodedProduct]
) -> tuple[dict[tuple[str, str], CodedProduct], dict[str, str]]:
    """(system URI, code) -> product for every URI of each system, and URI -> the system's
    name; a site's own codes ("system|code") are added last and win."""
    index: dict[tuple[str, str], CodedProduct] = {}
    names: dict[str, str] = {}
    systems = {key: system for f in files for key, system in f.systems.items()}
    for f in files:
        for key, codes in f.codes.items():
            for uri in systems[key].uris if key in systems else []:
                names[uri] = systems[key].name
                for code, product in codes.items():
                    index[(uri, _code_key(code))] = product
    for key, product in site.items():
        uri, _, code = key.rpartition("|")
        names.setdefault(uri, "site code")
        index[(uri, _code_key(code))] = product
    return index, names


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(read_config(path, MAX_KNOWLEDGE_BYTES))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a JSON object")
    return data
