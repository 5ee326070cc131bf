"""The transactions outbox (streams per account, batches, transactions) and each business's time zone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _add_business_time_zone()
    op.create_table(
        "transaction_stream",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("business_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("newest_date", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("waits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transaction_stream")),
        sa.UniqueConstraint(
            "business_id", "account_id", name=op.f("uq_transaction_stream_business_id_account_id")
        ),
    )
    op.create_table(
        "transaction_batch",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stream_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("codat_company_id", sa.String(length=36), nullable=False),
        sa.Column("codat_connection_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("push_operation_key", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["transaction_stream.id"],
            name=op.f("fk_transaction_batch_stream_id_transaction_stream"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transaction_batch")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_transaction_batch_idempotency_key")),
        sa.UniqueConstraint("push_operation_key", name=op.f("uq_transaction_batch_push_operation_key")),
    )
    op.create_index(op.f("ix_transaction_batch_stream_id"), "transaction_batch", ["stream_id"])
    op.create_table(
        "bank_transaction",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("business_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("transaction_id", sa.String(length=100), nullable=False),
        sa.Column("cleared_at", sa.DateTime(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("balance", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("transaction_type", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["transaction_batch.id"],
            name=op.f("fk_bank_transaction_batch_id_transaction_batch"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_bank_transaction")),
        sa.UniqueConstraint(
            "business_id", "transaction_id", name=op.f("uq_bank_transaction_business_id_transaction_id")
        ),
    )
    op.create_index(op.f("ix_bank_transaction_batch_id"), "bank_transaction", ["batch_id"])
    op.create_index(
        "ix_bank_transaction_queue",
        "bank_transaction",
        ["business_id", "account_id", "status", "cleared_at", "seq"],
    )


def _add_business_time_zone() -> None:
    # Businesses registered before time zones existed get their country's default, as new ones do.
    with op.batch_alter_table("business") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE business SET time_zone ="
        " CASE country WHEN 'CA' THEN 'America/Toronto' ELSE 'America/New_York' END"
    )
    with op.batch_alter_table("business") as batch:
        batch.alter_column("time_zone", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    op.drop_table("bank_transaction")
    op.drop_table("transaction_batch")
    op.drop_table("transaction_stream")
    with op.batch_alter_table("business") as batch:
        batch.drop_column("time_zone")
