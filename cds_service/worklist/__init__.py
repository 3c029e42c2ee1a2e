"""The pharmacist's worklist (``pgx-cds worklist``): the patients whose active orders already
conflict with their results, judged by the prescribing code itself.

``reader`` (the FHIR reads: paged, bounded, the server's capabilities), ``orders`` (which
orders to judge), ``prefetch`` (the hooks' templates read for many patients at once),
``judge`` (each order through ``pipeline.Engine.evaluate``; its cards as rows), ``run`` (one
run end to end), ``tasks`` (``--task``: a FHIR Task per row, never twice), ``output`` (CSV,
HTML, text).
"""
