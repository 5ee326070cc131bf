"""Onboarding tables: businesses, their bank accounts, Codat connections and source accounts.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 19:58:29.762464
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "business",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("codat_company_id", sa.String(length=36), nullable=True),
        sa.Column("company_request_key", sa.String(length=64), nullable=True),
        sa.Column("company_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("feed_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_business")),
        sa.UniqueConstraint("codat_company_id", name=op.f("uq_business_codat_company_id")),
    )
    op.create_table(
        "bank_account",
        sa.Column("business_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("account_type", sa.String(length=16), nullable=False),
        sa.Column("account_number", sa.String(length=34), nullable=False),
        sa.Column("routing_number", sa.String(length=16), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["business.id"],
            name=op.f("fk_bank_account_business_id_business"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("business_id", "id", name=op.f("pk_bank_account")),
    )
    op.create_table(
        "feed_connection",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("business_id", sa.String(length=64), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("request_key", sa.String(length=64), nullable=False),
        sa.Column("codat_connection_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("link_url", sa.Text(), nullable=True),
        sa.Column("link_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("link_lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["business.id"],
            name=op.f("fk_feed_connection_business_id_business"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_connection")),
        sa.UniqueConstraint("codat_connection_id", name=op.f("uq_feed_connection_codat_connection_id")),
    )
    op.create_index(op.f("ix_feed_connection_business_id"), "feed_connection", ["business_id"])
    # At most one current connection per business (partial unique index, on Postgres and SQLite).
    op.create_index(
        "uq_feed_connection_current",
        "feed_connection",
        ["business_id"],
        unique=True,
        postgresql_where=sa.text("is_current"),
        sqlite_where=sa.text("is_current"),
    )

    op.create_table(
        "feed_account",
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("business_id", sa.String(length=64), nullable=False),
        sa.Column("request_key", sa.String(length=64), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("feed_start_date", sa.Date(), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id", "account_id"],
            ["bank_account.business_id", "bank_account.id"],
            name=op.f("fk_feed_account_business_id_bank_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["feed_connection.id"],
            name=op.f("fk_feed_account_connection_id_feed_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", "account_id", name=op.f("pk_feed_account")),
    )
    op.create_index(op.f("ix_feed_account_business_id"), "feed_account", ["business_id"])


def downgrade() -> None:
    op.drop_table("feed_account")
    op.drop_table("feed_connection")
    op.drop_table("bank_account")
    op.drop_table("business")
