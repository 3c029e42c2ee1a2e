"""The hook calls the service answered and the orders it judged, per hour: the denominator of
``pgx-cds report`` (cards per 1,000 orders evaluated, per 1,000 calls).

``hook_calls`` has one row per process, hour, hook, service and drug, written when a process
adds up its counts (``store/call_counts.py``): ``drug`` is empty on the row of the calls and
all their orders, and names a covered drug on the row of its orders. The report adds the rows
up; ``pgx-cds purge`` deletes them with the card log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hook_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hook", sa.String(50), nullable=False),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("drug", sa.String(100), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("orders", sa.Integer, nullable=False),
    )
    op.create_index("ix_hook_calls_hour", "hook_calls", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_hook_calls_hour", table_name="hook_calls")
    op.drop_table("hook_calls")
