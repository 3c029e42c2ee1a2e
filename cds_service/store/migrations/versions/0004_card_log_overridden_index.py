"""An index on card_log.overridden_at: the hook path asks for the latest override (at most once
a second per process) and, without it, every such question scanned the whole card log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_card_log_overridden_at", "card_log", ["overridden_at"])


def downgrade() -> None:
    op.drop_index("ix_card_log_overridden_at", table_name="card_log")
