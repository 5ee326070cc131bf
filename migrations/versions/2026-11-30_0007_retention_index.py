"""An index for the retention prune of delivered transactions (status, completed_at).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_bank_transaction_retention", "bank_transaction", ["status", "completed_at"])


def downgrade() -> None:
    op.drop_index("ix_bank_transaction_retention", table_name="bank_transaction")
