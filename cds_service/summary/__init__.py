"""The patient's summary (issue 31): a page and a wallet card from exactly the decisions the
patient-view card makes, with a SMART Health Card (signed FHIR Bundle in a QR code).

``build`` (the summary from the pipeline's patient-view call), ``wording`` (every word),
``page`` (the HTML), ``bundle`` (the card's minimal FHIR Bundle), ``shc`` (credential, JWS,
``shc:/``, QR, verifying), ``keys`` (the issuer's keys: file or database, key set),
``document`` (page and card together), ``command`` (``pgx-cds summary``).
"""
