"""Alembic migrations of the service's database (see cds_service.schema).

A new table or column is a new file in ``versions/``; ``pgx-cds db upgrade`` (and, by default,
every start) brings the database to the newest revision.
"""
