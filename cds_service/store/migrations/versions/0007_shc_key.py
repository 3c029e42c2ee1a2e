"""The SMART Health Card issuer's keys kept in the database (``shc_key``).

Without a configured key (``PGX_CDS_SHC_KEY``) the service makes one signing key once and
keeps it here, so every replica and ``pgx-cds summary`` sign with the same key; a rotated
key stays (retired) so that its public part is still listed at ``/.well-known/jwks.json``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shc_key",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("private_jwk", sa.Text),
        sa.Column("public_jwk", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_shc_key_created_at", "shc_key", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_shc_key_created_at", table_name="shc_key")
    op.drop_table("shc_key")
