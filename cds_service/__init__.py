"""CDS Hooks service for pharmacogenomics in pain care.

A hook call flows through these modules, in order:

``request`` (validate the body) -> ``hook_context`` (draft orders in any FHIR version) ->
``medications`` (which covered drugs they contain) -> ``patient_data`` (prefetch or FHIR
queries) -> ``genomic_facts`` (one phenotype per gene, via ``phenotype``) ->
``recommendations`` (guideline rows from ``knowledge``) -> ``cards``.
``pipeline`` runs that flow; ``app`` serves it over HTTP.
"""

__version__ = "0.1.0"
