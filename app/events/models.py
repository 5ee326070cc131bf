"""Outbound events: who subscribed, the events (an outbox), each delivery of one to one subscriber, and the
projection of each business's bank feed that the events are derived from (also what the console lists)."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedText
from app.db import Base

UTCDateTime = DateTime(timezone=True)
SeqType = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only an INTEGER key


class EventType(StrEnum):
    FEED_CONNECTED = "feed.connected"
    FEED_NEEDS_ACTION = "feed.needs_action"
    ACCOUNT_CONNECTED = "account.connected"
    ACCOUNT_DISCONNECTED = "account.disconnected"
    TRANSACTIONS_DELIVERED = "transactions.delivered"
    TRANSACTIONS_FAILED = "transactions.failed"
    TRANSACTIONS_HELD = "transactions.held"
    ONBOARDING_STALLED = "onboarding.stalled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # parked: retried for events.retry_for_seconds; an operator may resend it


class EventSubscription(Base):
    __tablename__ = "event_subscription"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[str] = mapped_column(Text)  # space-separated EventType values
    business_id: Mapped[str | None] = mapped_column(String(64))  # only this business's events, if set
    # The `whsec_…` signing secret: encrypted at rest (app/crypto.py), since signing needs it back in clear.
    signing_secret: Mapped[str] = mapped_column(EncryptedText)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboundEvent(Base):
    """One event, in Standard Webhooks' shape; `id` is its `webhook-id`, the same on every delivery."""

    __tablename__ = "outbound_event"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    business_id: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)  # the JSON sent: {"type", "timestamp", "data"}
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EventDelivery(Base):
    """One event to one subscription. Per (subscription, business) only the oldest pending one is attempted,
    so a subscriber sees each business's events in order."""

    __tablename__ = "event_delivery"
    __table_args__ = (
        Index(
            "ix_event_delivery_pending",
            "subscription_id",
            "business_id",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    event_seq: Mapped[int] = mapped_column(ForeignKey("outbound_event.seq", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("event_subscription.id", ondelete="CASCADE"), index=True
    )
    business_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FeedState(Base):
    """What the projector last saw of a business's bank feed. Events are the differences between two of
    these; the console lists businesses by its health columns (indexed: 10,000 businesses list fast)."""

    __tablename__ = "feed_state"
    __table_args__ = (
        Index("ix_feed_state_needs_action", "business_id", postgresql_where=text("needs_action")),
        Index("ix_feed_state_broken", "business_id", postgresql_where=text("broken")),
        Index(
            "ix_feed_state_counts_due",
            "counts_due_at",
            postgresql_where=text("counts_due_at IS NOT NULL"),
            sqlite_where=text("counts_due_at IS NOT NULL"),
        ),
    )

    business_id: Mapped[str] = mapped_column(ForeignKey("business.id", ondelete="CASCADE"), primary_key=True)
    feed_version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    connection_status: Mapped[str | None] = mapped_column(String(16))
    connection_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    needs_action: Mapped[bool] = mapped_column(Boolean)
    broken: Mapped[bool] = mapped_column(Boolean)
    stalled: Mapped[bool] = mapped_column(Boolean, default=False)
    held_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    # The two counts read all of the business's transactions, so a finished batch does not take them: it
    # makes them due, at most `counts_every` after they were last taken (app/events/projector.py).
    counted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    counts_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # NULL: they are current
    snapshot: Mapped[str] = mapped_column(Text)  # {"connection": status, "accounts": {id: status}}
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StreamCursor(Base):
    """The last finished transaction batch of an account turned into an event (batches finish in id order
    within an account's stream)."""

    __tablename__ = "event_stream_cursor"

    stream_id: Mapped[int] = mapped_column(
        ForeignKey("transaction_stream.id", ondelete="CASCADE"), primary_key=True
    )
    last_batch_id: Mapped[int] = mapped_column(Integer)
