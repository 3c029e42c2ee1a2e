"""Genomic facts: one phenotype per gene (or HLA marker) from the patient's results.

The stage between the patient's data and the recommendations:

* ``result_reading`` reads each Observation (every shape labs and EHRs store) into findings;
* ``gene_decision`` decides one result per gene from them (genotype re-interpreted with
  today's CPIC tables, newest definite result, discrepancies noted);
* ``star_alleles`` and ``hla`` are the grammars for diplotypes and HLA typing.

Every step says in the trace what it used or ignored and why; ``pgx-cds explain`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .gene_decision import GeneResult, combine_haplotypes, decide
from .knowledge import Knowledge
from .result_reading import Finding, ResultReader
from .trace import Trace

__all__ = ["GeneResult", "Resolver", "summarise"]

Resolver = Callable[[str], dict[str, Any] | None]


def summarise(
    observations: list[dict[str, Any]],
    patient_id: str,
    knowledge: Knowledge,
    trace: Trace,
    resolve: Resolver | None = None,
    fhir_base: str | None = None,
    needed: frozenset[str] | None = None,
) -> dict[str, GeneResult]:
    """One result per gene (or HLA marker) from the patient's Observations.

    ``resolve`` reads a referenced Observation (``Observation/id``) that is not among
    ``observations``, e.g. the genotype a 3.0 therapeutic implication is derived from.
    ``fhir_base`` is the request's FHIR server: an absolute subject reference counts only
    when it points there (the same id on another server is another patient). ``needed``:
    the genes (and HLA alleles) the ordered drugs depend on; results for others are not read
    (None: all, as for the patient view and ``explain``).
    """
    # The same result twice (prefetch and a paged search overlapping) is one result.
    unique: dict[str, dict[str, Any]] = {}
    for o in observations:
        if isinstance(o, dict):
            key = f"{o.get('resourceType')}/{o.get('id')}" if o.get("id") else str(id(o))
            unique.setdefault(key, o)
    local = {
        f"Observation/{o.get('id')}": o
        for o in unique.values()
        if o.get("resourceType") == "Observation"
    }

    def lookup(reference: str) -> dict[str, Any] | None:
        key = "/".join(reference.split("/_history/")[0].split("/")[-2:])
        if key in local:
            return local[key]
        return resolve(key) if resolve else None

    reader = ResultReader(patient_id, knowledge, trace, lookup, fhir_base, needed)
    findings: list[Finding] = []
    haplotypes: list[Finding] = []
    for obs in unique.values():
        try:
            interpreted = reader.interpret(obs)
        except (TypeError, AttributeError, ValueError, KeyError, RecursionError) as exc:
            # A malformed result is ignored (no alert from it), never a failed call.
            trace.add(
                "results",
                f"Observation/{obs.get('id', '?')} ignored: malformed ({type(exc).__name__})",
            )
            continue
        for finding in interpreted:
            (haplotypes if finding.kind == "haplotype" else findings).append(finding)
    findings.extend(combine_haplotypes(haplotypes, findings, knowledge, trace))

    results: dict[str, GeneResult] = {}
    for gene in sorted({f.gene for f in findings}):
        result = decide([f for f in findings if f.gene == gene])
        results[gene] = result
        trace.add(
            "facts",
            f"{gene}: {result.phenotype} (from {result.kind} {result.observation})"
            + "".join(f"; {n}" for n in result.notes),
        )
    return results
