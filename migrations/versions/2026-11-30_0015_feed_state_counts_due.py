"""A business's held and failed counts taken when due, not for every finished batch.

The projector counted each business's transactions by status, over all of its rows, for every chunk of
finished batches: a business with a million transactions cost a million-row scan each time a batch of it
finished. A finished batch now makes the counts due, at most a few seconds after they were last taken.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("counts_due_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("feed_state") as batch:
        batch.add_column(sa.Column("counted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("counts_due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_feed_state_counts_due", "feed_state", ["counts_due_at"], postgresql_where=DUE, sqlite_where=DUE
    )


def downgrade() -> None:
    op.drop_index("ix_feed_state_counts_due", table_name="feed_state")
    with op.batch_alter_table("feed_state") as batch:
        batch.drop_column("counts_due_at")
        batch.drop_column("counted_at")
