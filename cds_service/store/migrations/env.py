"""Alembic environment: always run online, on the connection cds_service.schema hands over.

That connection already holds the migration lock, so several replicas starting together
migrate one after the other.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `pgx-cds db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
