"""The transactions outbox: each accepted transaction, the batches they are sent to Codat in, and one stream
per account that serialises acceptance and delivery.

A batch's idempotency key is stored with the batch, before Codat is called, so whoever sends it again after a
crash sends the same rows under the same key and Codat replays its first answer instead of writing twice.
"""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

UTCDateTime = DateTime(timezone=True)
# SQLite gives autoincrement only to an INTEGER primary key.
SeqType = BigInteger().with_variant(Integer(), "sqlite")
# Half of each bank_transaction page is left free: cutting a batch updates every row of a page in one
# transaction, and each new version must fit on its page for the update to be HOT (no table growth).
FILLFACTOR = 50
CUT_START_SQL = "'0001-01-01 00:00:00'"  # before any cleared date


class TransactionStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    REFUSED_BY_CODAT = "refused_by_codat"


UNFINISHED = (TransactionStatus.QUEUED, TransactionStatus.SENDING)
FAILED = (TransactionStatus.FAILED, TransactionStatus.REFUSED_BY_CODAT)


class BatchStatus(StrEnum):
    SENDING = "sending"  # the key is stored; Codat may or may not have the push yet
    PENDING = "pending"  # Codat answered with a push operation that has not finished
    SUCCESS = "success"
    FAILED = "failed"
    REFUSED = "refused"  # Codat refused the request itself


OPEN_BATCH = (BatchStatus.SENDING, BatchStatus.PENDING)


class TransactionStream(Base):
    """One account's place in the outbox: the newest date accepted, and the lease of the worker on it."""

    __tablename__ = "transaction_stream"
    __table_args__ = (
        UniqueConstraint("business_id", "account_id"),
        # Workers claim due streams through it: the streams with nothing to deliver are not in it.
        Index(
            "ix_transaction_stream_due",
            "next_attempt_at",
            postgresql_where=text("next_attempt_at IS NOT NULL"),
            sqlite_where=text("next_attempt_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    business_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(64))
    # Local date-time of the newest transaction accepted (queued or delivered): none older is taken.
    newest_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a worker should next look at the stream; NULL while it has nothing to deliver (a worker found the
    # queue's end, and nothing was accepted since): the next acceptance sets it.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Requests that queued transactions for the account: a worker that found the queue's end hands the
    # stream back as idle only if the count is still what it read before that cut.
    acceptances: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Consecutive waits (Codat unavailable, push still pending): the back-off grows with them.
    waits: Mapped[int] = mapped_column(Integer, default=0)
    # Why the worker last found the account's deliveries held (app/transactions/holds.py); None: not held.
    held_reason: Mapped[str | None] = mapped_column(String(32))
    # The (cleared_at, seq) of the last transaction cut into a batch: every queued one comes after it, so a
    # batch is cut without reading the account's history. It starts before any transaction (never NULL: an
    # `IS NULL OR` beside the range would keep SQLite from using the index).
    cut_cleared_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=False), server_default=text(CUT_START_SQL)
    )
    cut_seq: Mapped[int] = mapped_column(SeqType, server_default=text("0"))


class TransactionBatch(Base):
    """Up to 1,000 transactions of one account, sent to Codat as one push under one idempotency key."""

    __tablename__ = "transaction_batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream_id: Mapped[int] = mapped_column(
        ForeignKey("transaction_stream.id", ondelete="CASCADE"), index=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(36), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    codat_company_id: Mapped[str] = mapped_column(String(36))
    codat_connection_id: Mapped[str] = mapped_column(String(36))
    account_id: Mapped[str] = mapped_column(String(64))
    push_operation_key: Mapped[str | None] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    # The seq range of its transactions: found by the primary key, since batch_id is not indexed.
    first_seq: Mapped[int | None] = mapped_column(SeqType)
    last_seq: Mapped[int | None] = mapped_column(SeqType)


class BankTransaction(Base):
    """A cleared transaction accepted for delivery; `seq` is the order it was accepted in."""

    __tablename__ = "bank_transaction"
    __table_args__ = (
        # Codat: a transaction id is unique for the company in the accounting software.
        UniqueConstraint("business_id", "transaction_id"),
        # Only columns that never change are indexed, so a status update is a HOT update on Postgres:
        # the new row version goes on the same page and no index grows (bench/README.md, "transactions").
        # Batches are cut in (date, accepted order) per account; the list is read per account. account_id
        # comes first so that a query on business_id alone (the duplicates check) has only the unique key
        # to use, even before the planner has statistics (a first bulk load).
        Index("ix_bank_transaction_queue", "account_id", "business_id", "cleared_at", "seq"),
        Index("ix_bank_transaction_accepted", "accepted_at"),  # app/retention.py
        {"postgresql_with": {"fillfactor": FILLFACTOR}},
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    business_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(64))
    transaction_id: Mapped[str] = mapped_column(String(100))
    # The bank's local date-time of clearing, as Codat takes it (no time zone).
    cleared_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    description: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    balance: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    transaction_type: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(20))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("transaction_batch.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
