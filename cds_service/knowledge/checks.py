"""The knowledge's consistency rules (``Knowledge.check``; ``pgx-cds knowledge check``):
every file, whatever the site chose. A broken file stops the service at start rather than
giving a wrong card later."""

from __future__ import annotations

from typing import Any

from .models import GeneTable, Recommendation

#: The knowledge being checked (``loader.Knowledge``: not imported, the loader imports this).
Knowledge = Any


def check(k: Knowledge) -> list[str]:
    """Consistency rules for the knowledge (every file, whatever the site chose); an
    empty list means it is sound."""
    problems: list[str] = []
    ids: set[str] = set()
    for drug, (org, _) in k.stand_ins.items():
        if not any(k.organization(r) == org for r in k.recommendations_for(drug)):
            problems.append(f"guideline_gaps: {org} has no rows for {drug} to stand in")
    for rec in k.all_recommendations:
        where = f"recommendation {rec.id}"
        if rec.id in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(rec.id)
        if rec.drug not in k.drugs:
            problems.append(f"{where}: drug {rec.drug!r} has no entry in drugs.json")
        for alt in rec.alternatives:
            if alt not in k.alternative_products:
                problems.append(f"{where}: alternative {alt!r} has no product in alternatives.json")
        if rec.action in ("avoid", "alternative") and rec.strength == "none":
            problems.append(f"{where}: an {rec.action} row needs a strength")
        problems += _check_grading(k, rec, where)
        if rec.continuing_over_days is not None and not any(
            r.continuing_over_days is None and r.when == rec.when
            for r in k.all_recommendations
            if r.drug == rec.drug and r.guideline == rec.guideline
        ):
            problems.append(
                f"{where}: a continuing-therapy row needs the row it continues (same drug "
                "and conditions, without continuing_over_days)"
            )
    problems += _check_dose_limits(k)
    problems += _check_drug_codes(k)
    for name, drug in k.drugs.items():
        if drug.rxcui is not None and drug.rxcui not in k.products:
            problems.append(
                f"drug {name}: ingredient code {drug.rxcui} missing from rxnorm_products.json"
            )
    for gene in sorted({g for r in k.all_recommendations for g in r.when}):
        if gene in k.genes:
            problems.extend(_check_coverage(k, gene, k.genes[gene]))
    problems.extend(_check_qualified(k))
    for rxcui in k.product_forms:
        if rxcui not in k.products:
            problems.append(f"rxnorm_forms.json: product {rxcui} not in rxnorm_products.json")
    for name, drug in k.drugs.items():
        if drug.drug_class == "opioid" and name not in k.mme.factors:
            problems.append(f"opioid {name}: no entry in rules/mme.json (a factor or why not)")
    for name, entry in k.mme.factors.items():
        if entry.source is not None and entry.source not in k.mme.sources:
            problems.append(f"mme {name}: unknown source {entry.source!r}")
    for rule in k.label_rules:
        if rule.drug not in k.drugs:
            problems.append(f"label rule {rule.id}: drug {rule.drug!r} not in drugs.json")
    for opioid in k.label_rule_file.cough_cold.opioids:
        if opioid not in k.drugs:
            problems.append(f"cough_cold: opioid {opioid!r} not in drugs.json")
    for pretest_drug, pre in k.pretest.drugs.items():
        if pretest_drug not in k.drugs or pre.test not in k.pretest.tests:
            problems.append(f"pretest {pretest_drug}: unknown drug or test {pre.test!r}")
    seen_unclear: set[tuple[str, str]] = set()
    for unclear in k.unclear_rules:
        where = f"unclear-result rule {unclear.id}"
        genes = {g for r in k.all_recommendations if r.drug == unclear.drug for g in r.when}
        if unclear.marker not in genes:
            problems.append(f"{where}: no recommendation of {unclear.drug!r} uses {unclear.marker}")
        if unclear.test not in k.pretest.tests:
            problems.append(f"{where}: test {unclear.test!r} not in rules/pretest.json")
        if (unclear.drug, unclear.marker) in seen_unclear or unclear.id in ids:
            problems.append(f"{where}: duplicate drug and marker, or id")
        seen_unclear.add((unclear.drug, unclear.marker))
    problems.extend(_check_former_rules(k))
    mhs_genes = set(k.mhs.genes)
    for gene in sorted(mhs_genes - set(k.result_codes.genes.values())):
        problems.append(f"mhs_variants: {gene} has no HGNC id in result_codes.json")
    for rec in k.recommendations:
        for gene, cond in rec.when.items():
            if gene in mhs_genes and cond.phenotype != k.mhs.phenotype:
                problems.append(
                    f"recommendation {rec.id}: {gene} results read only as "
                    f"{k.mhs.phenotype!r} (others give no card: rules/mhs_variants.json)"
                )
    for gene, table in k.interactions.items():
        gene_table = k.genes.get(gene)
        if gene_table is None:
            problems.append(f"interactions {gene}: no allele table for the gene")
        elif table.multipliers and gene_table.scoring != "activity_score":
            problems.append(f"interactions {gene}: multipliers need an activity-score gene")
        elif table.phenotype_shifts and gene_table.scoring != "function_pair":
            problems.append(f"interactions {gene}: phenotype shifts need a function-pair gene")
        for strength, shifts in table.phenotype_shifts.items():
            problems += [
                f"interactions {gene} {strength}: unknown phenotype {p!r}"
                for pair in shifts.items()
                for p in pair
                if p not in k.phenotype_order.phenotypes
            ]
    for rec_id in k.dosing.dose_changes:
        if rec_id not in ids:
            problems.append(f"dosing: dose change for unknown recommendation {rec_id!r}")
    for _guideline, item in k.no_recommendations(every=True):
        if item.drug not in k.drugs:
            problems.append(f"no-recommendation {item.drug}/{item.gene}: drug not in drugs.json")
    return problems


def _check_qualified(k: Knowledge) -> list[str]:
    """A gene whose rows name a "Likely" phenotype for one drug must have it for every
    drug of that gene in the same organisation's rows (else that drug would read the
    lab's "Likely" as nothing at all)."""
    problems = []
    qualified = set(k.result_codes.qualified_phenotypes)
    for org in sorted({k.organization(r) for r in k.all_recommendations}):
        rows = [r for r in k.all_recommendations if k.organization(r) == org]
        problems += _qualified_problems(rows, qualified)
    return problems


def _check_grading(k: Knowledge, rec: Recommendation, where: str) -> list[str]:
    """DPWG rows carry DPWG's own classification and no CPIC-style strength; others the
    reverse."""
    if k.organization(rec) == "DPWG":
        problems = [] if rec.classification else [f"{where}: a DPWG row needs its classification"]
        if rec.strength not in ("ungraded", "none"):
            problems.append(f"{where}: DPWG grades no single row: strength 'ungraded'")
        if rec.strength == "none" and rec.action not in ("standard", "no-recommendation"):
            problems.append(f"{where}: an advising DPWG row is 'ungraded'")
        return problems
    if rec.classification is not None or rec.strength == "ungraded":
        return [f"{where}: only DPWG rows are 'ungraded' with a classification"]
    return []


def _check_dose_limits(k: Knowledge) -> list[str]:
    """A dose limit names a row that applies within it (same guideline, drug and
    conditions, marked ``within_dose_limit``); every such row is named by one."""
    problems = []
    named: set[str] = set()
    for rec in k.all_recommendations:
        if rec.dose_limit is None:
            continue
        within = k.rows_by_id.get(rec.dose_limit.within)
        named.add(rec.dose_limit.within)
        if (
            within is None
            or not within.within_dose_limit
            or (within.drug, within.when, within.guideline) != (rec.drug, rec.when, rec.guideline)
        ):
            problems.append(
                f"recommendation {rec.id}: dose limit's row {rec.dose_limit.within!r} is not "
                "a within_dose_limit row of the same guideline, drug and conditions"
            )
    problems += [
        f"recommendation {r.id}: within_dose_limit, but no dose limit names it"
        for r in k.all_recommendations
        if r.within_dose_limit and r.id not in named
    ]
    return problems


def _check_drug_codes(k: Knowledge) -> list[str]:
    """Every code names a drug the service knows (covered or interacting) and a source."""
    known = set(k.drugs) | k.inhibitor_ingredients
    problems = []
    systems = {key for f in k.drug_code_files for key in f.systems}
    for f in k.drug_code_files:
        for system, codes in f.codes.items():
            if system not in systems:
                problems.append(f"drug codes: unknown system {system!r}")
            for code, product in codes.items():
                where = f"drug code {system} {code}"
                if not known & set(product.ingredients):
                    problems.append(f"{where}: no ingredient the service knows")
                if product.source not in f.sources:
                    problems.append(f"{where}: unknown source {product.source!r}")
    return problems


def _check_former_rules(k: Knowledge) -> list[str]:
    """Each former rule is about a gene with a table and names what that table has."""
    problems = []
    for rule in k.former_rules.rules:
        where = f"former rule {rule.id}"
        table = k.genes.get(rule.gene)
        if table is None:
            problems.append(f"{where}: no allele table for {rule.gene}")
            continue
        functions = {a.function for a in table.alleles.values()}
        problems += [
            f"{where}: no {rule.gene} allele has the function {f!r}"
            for f in rule.activity_values_by_function
            if f not in functions
        ]
        problems += [
            f"{where}: {a} is not in the {rule.gene} table"
            for a in rule.activity_values
            if a not in table.alleles
        ]
        if (rule.phenotype_bands or rule.activity_values) and table.scoring != "activity_score":
            problems.append(f"{where}: {rule.gene} is not scored by activity score")
        if rule.function_pairs and table.scoring != "function_pair":
            problems.append(f"{where}: {rule.gene} is not scored by function pairs")
    return problems


def _check_coverage(k: Knowledge, gene: str, table: GeneTable) -> list[str]:
    """Every phenotype (and, for activity-score genes, every reachable score) of a
    single-gene pair has a row in each guideline that covers it, even if only an explicit
    no-recommendation row."""
    problems = []
    cases = _reachable_cases(table)
    pairs = {(r.drug, k.organization(r)) for r in k.all_recommendations if list(r.when) == [gene]}
    for drug, org in sorted(pairs):
        rows = [
            r.when[gene]
            for r in k.all_recommendations
            if r.drug == drug and list(r.when) == [gene] and k.organization(r) == org
        ]
        for phenotype, score in cases:
            if not any(c.matches(phenotype, score) for c in rows):
                at = f" (activity score {score:g})" if score is not None else ""
                problems.append(
                    f"{drug}/{gene}: no row (or explicit no-recommendation) for "
                    f"{phenotype}{at} ({org})"
                )
    return problems


def _qualified_problems(rows: list[Recommendation], qualified: set[str]) -> list[str]:
    """Within one organisation's rows: a "Likely" phenotype one drug's rows of a gene name
    must be named by every drug's rows of that gene."""
    problems = []
    by_gene: dict[str, set[str]] = {}
    for r in rows:
        for gene, cond in r.when.items():
            if cond.phenotype:
                by_gene.setdefault(gene, set()).add(cond.phenotype)
    for gene, phenotypes in sorted(by_gene.items()):
        named = phenotypes & qualified
        for drug in sorted({r.drug for r in rows if list(r.when) == [gene]}):
            has = {
                r.when[gene].phenotype for r in rows if r.drug == drug and list(r.when) == [gene]
            }
            problems += [
                f"{drug}/{gene}: no row for {p}, which other drugs' rows of {gene} name"
                for p in sorted(named - has)
            ]
    return problems


def _reachable_cases(table: GeneTable) -> list[tuple[str, float | None]]:
    """(phenotype, activity score) pairs a diplotype of this gene can have."""
    if table.scoring == "function_pair":
        phenotypes = set(table.function_pairs.values())
        return [
            (p, None) for p in sorted(phenotypes) if not p.startswith(("Indeterminate", "Likely"))
        ]
    values = sorted(
        {
            float(a.activity_value.lstrip("≥"))
            for a in table.alleles.values()
            if a.activity_value and a.activity_value.lower() != "n/a"
        }
    )
    cases = set()
    for i, x in enumerate(values):
        for y in values[i:]:
            score = x + y
            band = next(
                (
                    b
                    for b in table.phenotype_bands
                    if score >= b.min and (b.max is None or score <= b.max)
                ),
                None,
            )
            if band is not None:
                cases.add((band.phenotype, score))
    return sorted(cases, key=lambda c: c[1] or 0)
