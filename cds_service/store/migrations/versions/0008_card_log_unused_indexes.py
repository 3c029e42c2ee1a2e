"""Two card log indexes no query uses dropped: ``recommendation_id`` and ``patient_hash``.

Every card written updated them; nothing reads by them (the override report selects by
``issued_at``, the override check by ``order_hash``, feedback joins by ``card_uuid``; both
columns are only read back within those rows). Without them a card costs the database about
an eighth less work, measured on PostgreSQL under load (and the card writer's time in the
database is what a hook call served meanwhile can wait for). A query added later that needs
one brings its index back with its own migration.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UNUSED = {
    "ix_card_log_recommendation_id": "recommendation_id",
    "ix_card_log_patient_hash": "patient_hash",
}


def upgrade() -> None:
    for name in UNUSED:
        op.drop_index(name, table_name="card_log")


def downgrade() -> None:
    for name, column in UNUSED.items():
        op.create_index(name, "card_log", [column])
