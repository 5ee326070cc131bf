"""Every bank-feed target: each connection records its platform (Codat's key), each feed account the account
in the books it was mapped to (the platforms that map through Codat).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every connection made before this revision is QuickBooks Online's (hcws).
    op.add_column(
        "feed_connection",
        sa.Column("platform", sa.String(8), nullable=False, server_default=sa.text("'hcws'")),
    )
    op.add_column("feed_account", sa.Column("target_account_id", sa.Text()))
    op.add_column("feed_account", sa.Column("target_account_name", sa.Text()))


def downgrade() -> None:
    op.drop_column("feed_account", "target_account_name")
    op.drop_column("feed_account", "target_account_id")
    op.drop_column("feed_connection", "platform")
