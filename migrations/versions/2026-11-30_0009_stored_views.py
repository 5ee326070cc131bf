"""Each business's rendered bank-feed view, kept in Postgres, and a NOTIFY whenever what it shows changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables the view is rendered from, each with the column that names its business.
VIEW_SOURCES = {
    "business": "id",
    "bank_account": "business_id",
    "feed_connection": "business_id",
    "feed_account": "business_id",
}


def upgrade() -> None:
    op.create_table(
        "stored_bank_feed_view",
        sa.Column("business_id", sa.String(length=64), nullable=False),
        sa.Column("stamp", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("etag", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["business.id"],
            name=op.f("fk_stored_bank_feed_view_business_id_business"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("business_id", name=op.f("pk_stored_bank_feed_view")),
    )
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite (dev, tests) has no LISTEN/NOTIFY: its readers always check the stamp
    # Every write to what the view shows tells the listening replicas, at commit (app/bankfeed/cache.py).
    # Postgres sends one notification per business and transaction however many rows it touched.
    op.execute(
        """
        CREATE FUNCTION notify_bank_feed_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('bank_feed_changed', to_jsonb(COALESCE(NEW, OLD)) ->> TG_ARGV[0]);
            RETURN NULL;
        END
        $$
        """
    )
    for table, column in VIEW_SOURCES.items():
        op.execute(
            f"CREATE TRIGGER {table}_notify_bank_feed_changed AFTER INSERT OR UPDATE OR DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION notify_bank_feed_changed('{column}')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in VIEW_SOURCES:
            op.execute(f"DROP TRIGGER {table}_notify_bank_feed_changed ON {table}")
        op.execute("DROP FUNCTION notify_bank_feed_changed()")
    op.drop_table("stored_bank_feed_view")
