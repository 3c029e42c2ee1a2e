"""The card log (every card issued, with keyed hashes instead of patient ids), the key those
hashes use, and the feedback's link to the card log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("card_uuid", sa.String(64), nullable=False, unique=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hook", sa.String(50), nullable=False),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("drug", sa.String(100), nullable=False),
        sa.Column("genes", sa.String(200), nullable=False),
        sa.Column("phenotype", sa.String(300), nullable=False),
        sa.Column("recommendation_id", sa.String(200), nullable=False),
        sa.Column("indicator", sa.String(20), nullable=False),
        sa.Column("knowledge_version", sa.String(40), nullable=False),
        sa.Column("shown", sa.Boolean(), nullable=False),
        sa.Column("patient_hash", sa.String(64), nullable=False),
        sa.Column("order_hash", sa.String(64), nullable=False),
        sa.Column("overridden_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_card_log_issued_at", "card_log", ["issued_at"])
    op.create_index("ix_card_log_recommendation_id", "card_log", ["recommendation_id"])
    op.create_index("ix_card_log_patient_hash", "card_log", ["patient_hash"])
    op.create_index("ix_card_log_order_hash", "card_log", ["order_hash"])
    op.create_table(
        "service_key",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("card_known", sa.Boolean()))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("card_known")
    op.drop_table("service_key")
    for index in ("order_hash", "patient_hash", "recommendation_id", "issued_at"):
        op.drop_index(f"ix_card_log_{index}", table_name="card_log")
    op.drop_table("card_log")
