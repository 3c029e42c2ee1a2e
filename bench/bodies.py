"""The hook requests the benchmarks send: an ``order-select`` for acetaminophen/codeine with a
realistic patient's genomic results in its prefetch, for the quiet path (a CYP2D6 normal
metabolizer: no card) and the alerting path (an ultrarapid metabolizer: the critical card with
its one-click suggestions, written to the card log). ``tests/web/test_answer_bytes.py`` pins
the service's answer to the alerting one byte for byte (uuids masked)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from builders import (
    APAP_CODEINE,
    bundle,
    gene_component,
    genotype_obs,
    hook_request,
    implication_obs,
    med_order,
    phenotype_obs,
)

#: CYP2D6 as typed for the two paths: no card (normal) and the critical codeine card
NORMAL = ("*1/*2", "Normal Metabolizer")
ULTRARAPID = ("*1/*2xN", "Ultrarapid Metabolizer")


def realistic_results(count: int = 31, cyp2d6: tuple[str, str] = NORMAL) -> dict:
    """A patient's genomic results as a lab panel stores them: genotypes, phenotypes and
    therapeutic implications for several genes, repeated retests, HLA typing (CYP2D6 as
    ``cyp2d6``: diplotype and phenotype)."""
    genes = [
        ("CYP2D6", *cyp2d6),
        ("CYP2C9", "*1/*1", "Normal Metabolizer"),
        ("CYP2C19", "*1/*17", "Rapid Metabolizer"),
    ]
    obs: list[dict] = []
    i = 0
    while len(obs) < count - 2:
        gene, diplotype, phenotype = genes[i % len(genes)]
        year = 2015 + i // len(genes)
        obs.append(genotype_obs(diplotype, gene, obs_id=f"g{i}", date=f"{year}-03-01"))
        obs.append(phenotype_obs(phenotype, gene, obs_id=f"p{i}", date=f"{year}-03-01"))
        obs.append(implication_obs(phenotype, gene, obs_id=f"t{i}"))
        i += 1
    obs = obs[: count - 2]
    hla = genotype_obs("HLA-B*07:02:01+HLA-B*44:03:01", gene="HLA-B", obs_id="hla-b")
    hla_a = genotype_obs("HLA-A*02:01+HLA-A*24:02", gene="HLA-A", obs_id="hla-a")
    hla["component"] = [gene_component("HLA-B")]
    return bundle(*obs, hla, hla_a)


def prefetch_body(results: int = 31, orders: int = 1, cyp2d6: tuple[str, str] = NORMAL) -> dict:
    """An ``order-select`` for acetaminophen/codeine with a realistic patient's results in
    its prefetch: no card for a normal metabolizer, the critical card with its suggestions
    (logged in the card log) for an ultrarapid one (``cyp2d6=ULTRARAPID``)."""
    drafts = [med_order(APAP_CODEINE, order_id=f"order-{n}") for n in range(orders)]
    return hook_request(
        "order-select",
        drafts,
        prefetch={
            "genomicResults": realistic_results(results, cyp2d6),
            "patient": {"resourceType": "Patient", "id": "pat-1", "birthDate": "1970-01-01"},
            "activeMedications": bundle(),
            "medicationStatements": bundle(),
        },
    )
