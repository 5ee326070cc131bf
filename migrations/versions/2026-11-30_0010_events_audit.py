"""Outbound events (subscriptions, outbox, deliveries), the feed-state projection the console lists, and the
audit trail.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("business_id", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entry")),
    )
    op.create_index(op.f("ix_audit_entry_at"), "audit_entry", ["at"], unique=False)
    op.create_index("ix_audit_entry_business", "audit_entry", ["business_id", "id"], unique=False)
    op.create_table(
        "event_subscription",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("business_id", sa.String(length=64), nullable=True),
        sa.Column("signing_secret", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_subscription")),
    )
    op.create_table(
        "outbound_event",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbound_event")),
        sa.UniqueConstraint("id", name=op.f("uq_outbound_event_id")),
    )
    op.create_index(op.f("ix_outbound_event_business_id"), "outbound_event", ["business_id"], unique=False)
    op.create_table(
        "event_delivery",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_seq"],
            ["outbound_event.seq"],
            name=op.f("fk_event_delivery_event_seq_outbound_event"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["event_subscription.id"],
            name=op.f("fk_event_delivery_subscription_id_event_subscription"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_delivery")),
    )
    op.create_index(op.f("ix_event_delivery_event_seq"), "event_delivery", ["event_seq"], unique=False)
    op.create_index(
        "ix_event_delivery_pending",
        "event_delivery",
        ["subscription_id", "business_id", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        op.f("ix_event_delivery_subscription_id"), "event_delivery", ["subscription_id"], unique=False
    )
    op.create_table(
        "event_stream_cursor",
        sa.Column("stream_id", sa.Integer(), nullable=False),
        sa.Column("last_batch_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["transaction_stream.id"],
            name=op.f("fk_event_stream_cursor_stream_id_transaction_stream"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_event_stream_cursor")),
    )
    op.create_table(
        "feed_state",
        sa.Column("business_id", sa.String(length=64), nullable=False),
        sa.Column("feed_version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("connection_status", sa.String(length=16), nullable=True),
        sa.Column("connection_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("needs_action", sa.Boolean(), nullable=False),
        sa.Column("broken", sa.Boolean(), nullable=False),
        sa.Column("stalled", sa.Boolean(), nullable=False),
        sa.Column("held_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["business.id"],
            name=op.f("fk_feed_state_business_id_business"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("business_id", name=op.f("pk_feed_state")),
    )
    op.create_index(
        "ix_feed_state_broken",
        "feed_state",
        ["business_id"],
        unique=False,
        postgresql_where=sa.text("broken"),
    )
    op.create_index(
        "ix_feed_state_needs_action",
        "feed_state",
        ["business_id"],
        unique=False,
        postgresql_where=sa.text("needs_action"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_feed_state_needs_action", table_name="feed_state", postgresql_where=sa.text("needs_action")
    )
    op.drop_index("ix_feed_state_broken", table_name="feed_state", postgresql_where=sa.text("broken"))
    op.drop_table("feed_state")
    op.drop_table("event_stream_cursor")
    op.drop_index(op.f("ix_event_delivery_subscription_id"), table_name="event_delivery")
    op.drop_index(
        "ix_event_delivery_pending",
        table_name="event_delivery",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.drop_index(op.f("ix_event_delivery_event_seq"), table_name="event_delivery")
    op.drop_table("event_delivery")
    op.drop_index(op.f("ix_outbound_event_business_id"), table_name="outbound_event")
    op.drop_table("outbound_event")
    op.drop_table("event_subscription")
    op.drop_index("ix_audit_entry_business", table_name="audit_entry")
    op.drop_index(op.f("ix_audit_entry_at"), table_name="audit_entry")
    op.drop_table("audit_entry")
