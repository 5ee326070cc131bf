"""Streams with work found through an index: `transaction_stream.next_attempt_at` is NULL while a stream has
nothing to deliver (set again by the next acceptance), and each stream counts its acceptances, so that a
worker handing a stream back can tell whether anything was accepted since its last cut.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("next_attempt_at IS NOT NULL")


def upgrade() -> None:
    # Every existing stream stays due: a worker finding nothing to send hands it back as idle.
    with op.batch_alter_table("transaction_stream") as batch:
        batch.alter_column("next_attempt_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.add_column(sa.Column("acceptances", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.create_index(
        "ix_transaction_stream_due",
        "transaction_stream",
        ["next_attempt_at"],
        postgresql_where=DUE,
        sqlite_where=DUE,
    )


def downgrade() -> None:
    op.drop_index("ix_transaction_stream_due", table_name="transaction_stream")
    op.execute(
        "UPDATE transaction_stream SET next_attempt_at = CURRENT_TIMESTAMP WHERE next_attempt_at IS NULL"
    )
    with op.batch_alter_table("transaction_stream") as batch:
        batch.drop_column("acceptances")
        batch.alter_column("next_attempt_at", existing_type=sa.DateTime(timezone=True), nullable=False)
