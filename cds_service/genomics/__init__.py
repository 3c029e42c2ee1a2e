"""The patient's genomic results, read into one result per gene or HLA marker
(``genomic_facts``: the stage; ``result_reading``, ``gene_decision`` and the grammars)."""
