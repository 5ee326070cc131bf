"""What we keep of each business's bank feed, and of Codat's ids and states for it.

Every Codat write is recorded as intent (its idempotency key) before the call and as outcome (Codat's id and
status) after it, so an interrupted onboarding resumes with the same keys and creates nothing twice.
"""

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedText
from app.db import Base

UTCDateTime = DateTime(timezone=True)


class Business(Base):
    """An SMB customer of the fintech, registered by an internal service."""

    __tablename__ = "business"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2))
    time_zone: Mapped[str] = mapped_column(String(64))
    codat_company_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    # Idempotency key of the create-company call, stored before the call is made.
    company_request_key: Mapped[str | None] = mapped_column(String(64))
    company_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped on every change the bank-feed view shows; part of its ETag and of change notifications.
    feed_version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now(), onupdate=func.now())


class BankAccount(Base):
    """A bank account the fintech holds for the business: the source of truth for its details."""

    __tablename__ = "bank_account"

    business_id: Mapped[str] = mapped_column(ForeignKey("business.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    account_type: Mapped[str] = mapped_column(String(16))
    account_number: Mapped[str] = mapped_column(String(34))
    routing_number: Mapped[str | None] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now(), onupdate=func.now())


class FeedConnection(Base):
    """One Codat connection of a business to its accounting platform. Earlier ones are kept as history after a
    reconnect or a change of platform; at most one is current."""

    __tablename__ = "feed_connection"
    __table_args__ = (
        # At most one current connection per business, on Postgres and SQLite alike.
        Index(
            "uq_feed_connection_current",
            "business_id",
            unique=True,
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    business_id: Mapped[str] = mapped_column(ForeignKey("business.id", ondelete="CASCADE"), index=True)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    # Codat's platform key (app/bankfeed/platforms.py), chosen when the business connects.
    platform: Mapped[str] = mapped_column(String(8), default="hcws", server_default=text("'hcws'"))
    request_key: Mapped[str] = mapped_column(String(64))
    codat_connection_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    status: Mapped[str | None] = mapped_column(String(16))
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The linkUrl carries a one-time password: a secret, never logged, served only to its own business.
    link_url: Mapped[str | None] = mapped_column(EncryptedText)
    link_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A lease instead of a row lock held across the Codat call: one refresher at a time, across processes.
    link_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The error of Codat's latest connection.failed, until the connection links.
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class FeedAccount(Base):
    """A bank account registered (or being registered) as a Codat source account on one connection."""

    __tablename__ = "feed_account"
    __table_args__ = (
        ForeignKeyConstraint(
            ["business_id", "account_id"], ["bank_account.business_id", "bank_account.id"], ondelete="CASCADE"
        ),
        # Connect records Codat's answers in every row it has just inserted, in one statement: half of each
        # page free keeps those updates (and later status changes: no indexed column changes) HOT (0016).
        {"postgresql_with": {"fillfactor": 50}},
    )

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("feed_connection.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    business_id: Mapped[str] = mapped_column(String(64), index=True)
    request_key: Mapped[str] = mapped_column(String(64))
    registered: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str | None] = mapped_column(String(16))
    feed_start_date: Mapped[date | None] = mapped_column(Date)
    # The account in the books it feeds, once mapped through Codat (Xero, NetSuite, FreeAgent, Exact).
    target_account_id: Mapped[str | None] = mapped_column(Text)
    target_account_name: Mapped[str | None] = mapped_column(Text)  # the platform's, any length
    # Codat takes no write from the account though it shows connected (app/transactions/holds.py).
    write_hold: Mapped[str | None] = mapped_column(String(32))
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class StoredBankFeedView(Base):
    """A business's bank-feed view as served (JSON and ETag), with the stamp it was rendered at.

    Written and read over raw asyncpg by app/bankfeed/cache.py; any replica serves it while the stamp is
    current, so a business's view is rendered once per change, not once per replica or per cache miss.
    """

    __tablename__ = "stored_bank_feed_view"

    business_id: Mapped[str] = mapped_column(ForeignKey("business.id", ondelete="CASCADE"), primary_key=True)
    stamp: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    etag: Mapped[str] = mapped_column(String(40))
