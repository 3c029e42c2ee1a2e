"""The card log's key id and client, the feedback's client, and one row per feedback item.

* ``card_log.key_id``: which hashing key made a row's patient and order hashes (the key now
  comes from the environment or a mounted secret and may be rotated; rows made with the key
  the service used to keep in this database are marked ``db``).
* ``card_log.client`` and ``feedback.client``: the authenticated client (JWT ``iss``) a card
  was issued to and that sent a feedback item; feedback is accepted only from the card's
  client, and counted per client for its rate limit (index on client, received_at).
* A unique index on feedback (card_uuid, outcome, outcome_timestamp): concurrent retries of
  one item stored it up to five times. Existing duplicates are deleted first (the oldest row
  of each item is kept).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (plain ADD COLUMN and CREATE INDEX: both databases have them, no table copy needed)
    op.add_column("card_log", sa.Column("key_id", sa.String(16)))
    op.add_column("card_log", sa.Column("client", sa.String(255)))
    op.execute("UPDATE card_log SET key_id = 'db' WHERE key_id IS NULL")
    op.add_column("feedback", sa.Column("client", sa.String(255)))
    op.execute(
        "DELETE FROM feedback WHERE id NOT IN (SELECT keep FROM (SELECT MIN(id) AS keep "
        "FROM feedback GROUP BY card_uuid, outcome, outcome_timestamp) AS oldest)"
    )
    op.create_index(
        "uq_feedback_item", "feedback", ["card_uuid", "outcome", "outcome_timestamp"], unique=True
    )
    op.create_index("ix_feedback_client_received_at", "feedback", ["client", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_client_received_at", table_name="feedback")
    op.drop_index("uq_feedback_item", table_name="feedback")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("client")
    with op.batch_alter_table("card_log") as batch:
        batch.drop_column("client")
        batch.drop_column("key_id")
