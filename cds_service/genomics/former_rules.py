"""Which disagreements between results a change of CPIC's rules explains.

CPIC has re-drawn its phenotype rules (``knowledge/rules/former_phenotypes.json``): before
2019 a CYP2D6 activity score of 1 was a normal ("extensive") metabolizer, decreased-function
alleles counted 0.5 until the allele table lowered several of them to 0.25, and a CYP2C19
``*1/*17`` was an ultrarapid metabolizer until 2017. A lab's label that one of these former
rules gives is an outdated label, re-interpreted with today's tables; a disagreement no
former rule explains (a ``*1/*1`` genotype and a "poor metabolizer" report) is a discordance.

Each former rule is today's table with the values, bands or pairs that differed. What a
former rule says is worked out once per knowledge (a few dozen representative diplotypes,
scored with each table), never per call.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

from ..knowledge.loader import Knowledge
from ..knowledge.models import FormerRule, GeneTable
from .star_alleles import INDETERMINATE, score_diplotype

#: CPIC's "Likely" terms hedge the call without changing it ("Likely intermediate
#: metabolizer" and "intermediate metabolizer" are the same reading of a result).
LIKELY = "Likely "


def same_call(a: str, b: str) -> bool:
    """Do two phenotype terms make the same call (``Likely`` aside)?"""
    return a.removeprefix(LIKELY) == b.removeprefix(LIKELY)


def former_tables(knowledge: Knowledge, gene: str) -> tuple[tuple[FormerRule, GeneTable], ...]:
    """The gene's former rules, oldest first, each as the table it amounts to."""
    return _former_tables(knowledge).get(gene, ())


def former_phenotypes(knowledge: Knowledge, gene: str, diplotype: str) -> dict[str, FormerRule]:
    """The phenotypes former rules gave this diplotype (each with the oldest rule that gave
    it), where they differ from today's reading; empty for a gene without former rules."""
    return dict(_former_phenotypes(knowledge, gene, diplotype))


def relabelling(knowledge: Knowledge, gene: str, older: str, newer: str) -> FormerRule | None:
    """The former rule under which a genotype was labelled ``older`` and is labelled
    ``newer`` by a later rule or today's, if there is one (results without a genotype)."""
    return _relabellings(knowledge).get((gene, older, newer))


@lru_cache(maxsize=8)
def _former_tables(knowledge: Knowledge) -> dict[str, tuple[tuple[FormerRule, GeneTable], ...]]:
    out: dict[str, list[tuple[FormerRule, GeneTable]]] = {}
    for rule in knowledge.former_rules.rules:
        table = knowledge.genes.get(rule.gene)
        if table is not None:
            out.setdefault(rule.gene, []).append((rule, _apply(table, rule)))
    return {gene: tuple(tables) for gene, tables in out.items()}


def _apply(table: GeneTable, rule: FormerRule) -> GeneTable:
    """Today's ``table`` with ``rule``'s values, bands and pairs."""
    alleles = dict(table.alleles)
    for name, allele in table.alleles.items():
        core, _, copies = name.partition("x")
        per_copy = rule.activity_values.get(core)
        core_entry = table.alleles.get(core)
        if per_copy is None and core_entry is not None:
            per_copy = rule.activity_values_by_function.get(core_entry.function)
        if per_copy is None or allele.activity_value in (None, "n/a"):
            continue
        if not copies:
            value = f"{per_copy:g}"
        elif copies.isdigit():
            value = f"{per_copy * int(copies):g}"
        elif copies == "≥3":
            value = f"≥{per_copy * 3:g}"
        else:
            continue
        alleles[name] = allele.model_copy(update={"activity_value": value})
    update: dict[str, object] = {"alleles": alleles}
    if rule.phenotype_bands is not None:
        update["phenotype_bands"] = list(rule.phenotype_bands)
    if rule.function_pairs:
        update["function_pairs"] = {**table.function_pairs, **rule.function_pairs}
    return table.model_copy(update=update)


@lru_cache(maxsize=1024)
def _former_phenotypes(
    knowledge: Knowledge, gene: str, diplotype: str
) -> tuple[tuple[str, FormerRule], ...]:
    table = knowledge.genes.get(gene)
    if table is None:
        return ()
    today = score_diplotype(diplotype, table).phenotype
    found: dict[str, FormerRule] = {}
    for rule, former in former_tables(knowledge, gene):
        phenotype = score_diplotype(diplotype, former).phenotype
        if phenotype not in (INDETERMINATE, today):
            found.setdefault(phenotype, rule)
    return tuple(found.items())


@lru_cache(maxsize=8)
def _relabellings(knowledge: Knowledge) -> dict[tuple[str, str, str], FormerRule]:
    """(gene, older label, newer label) -> the former rule of the older label, for every
    genotype whose label changed between a former rule and a later one (or today's)."""
    out: dict[tuple[str, str, str], FormerRule] = {}
    for gene, formers in _former_tables(knowledge).items():
        today = knowledge.genes[gene]
        tables = [table for _, table in formers] + [today]
        for first, second in itertools.combinations_with_replacement(_representatives(tables), 2):
            labels = [score_diplotype(f"{first}/{second}", t).phenotype for t in tables]
            for i, j in itertools.combinations(range(len(tables)), 2):
                older, newer = labels[i], labels[j]
                if INDETERMINATE not in (older, newer) and older != newer:
                    out.setdefault((gene, older, newer), formers[i][0])
    return out


def _representatives(tables: list[GeneTable]) -> list[str]:
    """One allele for each way the tables treat alleles (its function and value in each):
    every diplotype's labels are those of a pair of representatives."""
    seen: dict[tuple[tuple[str, str | None], ...], str] = {}
    for name in tables[-1].alleles:
        entries = [t.alleles[name] for t in tables]
        signature = tuple((e.function, e.activity_value) for e in entries)
        seen.setdefault(signature, name)
    return list(seen.values())
