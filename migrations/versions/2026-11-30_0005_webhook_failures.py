"""Webhook events that fail: rejected (did not parse) or retried with backoff, then dead.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_event") as table:
        table.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="received"))
        table.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("error", sa.Text(), nullable=True))
    op.execute("UPDATE webhook_event SET status = 'applied' WHERE processed_at IS NOT NULL")
    op.create_index(op.f("ix_webhook_event_status"), "webhook_event", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_event_status"), table_name="webhook_event")
    with op.batch_alter_table("webhook_event") as table:
        for column in ("error", "next_attempt_at", "attempts", "status"):
            table.drop_column(column)
