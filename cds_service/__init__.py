"""CDS Hooks service for pharmacogenomics in pain care.

A hook call passes through the sub-packages in this order (``pipeline`` runs it end to end):

=============  =================================================================================
``web``        the edge: the Flask app and its routes, the production server (gunicorn), client
               JWTs, discovery, metrics and logs
``fhir``       what the EHR sends and what the service reads from its FHIR server: the hook
               context's draft orders, prefetch or FHIR reads, guarded outbound HTTP
``genomics``   the patient's genomic results read into one result per gene (diplotypes, HLA
               typing, reported phenotypes)
``clinical``   the decision: which covered drugs are ordered, the guideline rows that apply,
               phenoconversion, label and dose rules, and the cards with their suggestions
=============  =================================================================================

Beside them: ``knowledge`` (the knowledge files' models and loader: the data every stage reads),
``store`` (the database: card log, feedback, client-JWT replay, migrations), ``governance``
(the site's alerting policy and the committee's report) and ``core`` (what every stage
shares: errors, the decision trace, log-safe references, wording, JSON limits, deadlines, the
hook request's model). At the top: ``pipeline`` (one hook call), ``cli`` (``pgx-cds``),
``settings`` (``PGX_CDS_*``), ``sandbox`` (loading the sandbox kit) and ``worklist`` (the
pharmacist's worklist: every active order judged by ``pipeline``, as a hook call would) and
``summary`` (the patient's summary page and SMART Health Card, from ``pipeline``'s
patient-view decisions).

Imports run one way: a package imports only those ``ALLOWED_IMPORTS`` lists for it (and
itself), so lower stages never know higher ones (``genomics`` knows nothing of ``web``,
``store`` or ``clinical``; ``clinical`` nothing of ``web``). ``tests/test_architecture.py``
reads every import of the package and fails on one against this table or on any cycle.
"""

__version__ = "0.2.0"

#: Everything below the whole call (``pipeline``): the stages and what is beside them.
_STAGES = frozenset(
    {"core", "settings", "knowledge", "fhir", "genomics", "clinical", "store", "governance"}
)
#: What each part of the package may import (besides itself): the direction of the stages.
ALLOWED_IMPORTS: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "settings": frozenset(),
    "knowledge": frozenset({"core"}),
    "fhir": frozenset({"core", "knowledge"}),
    "genomics": frozenset({"core", "knowledge", "fhir"}),
    "store": frozenset({"core"}),
    "clinical": frozenset({"core", "knowledge", "fhir", "genomics", "store"}),
    "governance": frozenset({"core", "settings", "knowledge", "store", "clinical"}),
    "pipeline": _STAGES,
    "web": _STAGES | {"pipeline", "summary"},
    "sandbox": frozenset({"core", "settings", "fhir"}),
    "worklist": _STAGES | {"pipeline"},
    "summary": _STAGES | {"pipeline"},
    "cli": _STAGES | {"pipeline", "web", "sandbox", "worklist", "summary"},
}
