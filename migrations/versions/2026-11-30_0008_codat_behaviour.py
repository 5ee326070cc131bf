"""Codat as it really behaves: why an account's deliveries are held, and the last linking error.

- ``feed_account.write_hold``: Codat will not take writes from the account though it shows connected
  (``credentials_revoked`` after we revoked its credentials, ``refused_by_codat`` after Codat refused a push
  for the account); cleared when QuickBooks reports it connected again.
- ``feed_connection.last_error``: the error of the latest ``connection.failed``, until the connection links.
- ``transaction_stream.held_reason``: the worker's last finding for the stream, for the held-transactions
  gauge (one query for every replica).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feed_account") as table:
        table.add_column(sa.Column("write_hold", sa.String(length=32), nullable=True))
    with op.batch_alter_table("feed_connection") as table:
        table.add_column(sa.Column("last_error", sa.Text(), nullable=True))
    with op.batch_alter_table("transaction_stream") as table:
        table.add_column(sa.Column("held_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transaction_stream") as table:
        table.drop_column("held_reason")
    with op.batch_alter_table("feed_connection") as table:
        table.drop_column("last_error")
    with op.batch_alter_table("feed_account") as table:
        table.drop_column("write_hold")
