"""bank_transaction without table growth from status updates: only never-changing columns are indexed, pages
are half filled (Postgres), each stream keeps where its last batch was cut, and each batch its seq range.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Every stream's cut starts before any transaction: the whole queue is after it.
    op.add_column(
        "transaction_stream",
        sa.Column(
            "cut_cleared_at",
            sa.DateTime(timezone=False),
            nullable=False,
            server_default=sa.text("'0001-01-01 00:00:00'"),
        ),
    )
    op.add_column(
        "transaction_stream", sa.Column("cut_seq", SEQ, nullable=False, server_default=sa.text("0"))
    )
    op.add_column("transaction_batch", sa.Column("first_seq", SEQ))
    op.add_column("transaction_batch", sa.Column("last_seq", SEQ))
    # Batches cut before this revision, through the index about to go.
    op.execute(
        "UPDATE transaction_batch SET"
        " first_seq = (SELECT min(seq) FROM bank_transaction t WHERE t.batch_id = transaction_batch.id),"
        " last_seq = (SELECT max(seq) FROM bank_transaction t WHERE t.batch_id = transaction_batch.id)"
    )
    op.drop_index("ix_bank_transaction_batch_id", table_name="bank_transaction")
    op.drop_index("ix_bank_transaction_queue", table_name="bank_transaction")
    op.drop_index("ix_bank_transaction_retention", table_name="bank_transaction")
    op.create_index(
        "ix_bank_transaction_queue", "bank_transaction", ["account_id", "business_id", "cleared_at", "seq"]
    )
    op.create_index("ix_bank_transaction_accepted", "bank_transaction", ["accepted_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE bank_transaction SET (fillfactor = 50)")  # pages written from now on


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE bank_transaction RESET (fillfactor)")
    op.drop_index("ix_bank_transaction_accepted", table_name="bank_transaction")
    op.drop_index("ix_bank_transaction_queue", table_name="bank_transaction")
    op.create_index(
        "ix_bank_transaction_queue",
        "bank_transaction",
        ["business_id", "account_id", "status", "cleared_at", "seq"],
    )
    op.create_index("ix_bank_transaction_retention", "bank_transaction", ["status", "completed_at"])
    op.create_index("ix_bank_transaction_batch_id", "bank_transaction", ["batch_id"])
    op.drop_column("transaction_batch", "last_seq")
    op.drop_column("transaction_batch", "first_seq")
    op.drop_column("transaction_stream", "cut_seq")
    op.drop_column("transaction_stream", "cut_cleared_at")
