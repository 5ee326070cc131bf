"""Request and response bodies of the transactions endpoints (camelCase on the wire)."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from app.bankfeed.schemas import ApiModel, StrictApiModel, UtcDateTime
from app.inputs import Description, ExternalId, Money

MAX_PER_REQUEST = 1000  # Codat's maximum per push; a bigger request would only be split again.

TransactionType = Literal["Credit", "Debit", "Unknown"]
StatusName = Literal["queued", "held", "sending", "delivered", "failed", "refused_by_codat"]
StatusFilter = Literal["pending", "queued", "sending", "delivered", "failed", "refused_by_codat"]


def _local_date_time(value: object) -> object:
    """A date or a date-time without an offset: Codat takes the bank's local date, never converting it."""
    if isinstance(value, str) and len(value) == 10:
        return datetime.combine(date.fromisoformat(value), datetime.min.time())
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            raise ValueError("must be the bank's local date or date-time, without a UTC offset")
        return parsed
    raise ValueError("must be a date (2026-11-23) or a local date-time (2026-11-23T10:21:00)")


LocalDateTime = Annotated[datetime, BeforeValidator(_local_date_time)]


class TransactionIn(StrictApiModel):
    id: ExternalId = Field(
        description="Your id for the transaction, unique within the business; a repeated id is a duplicate."
    )
    date: LocalDateTime = Field(
        description="The cleared date (or local date-time), not in the future and no earlier than the "
        "account's `acceptsFrom` (QuickBooks Online: today or yesterday; Xero: up to 365 days old)."
    )
    description: Description
    amount: Money = Field(description="Positive for a Credit, negative for a Debit.")
    balance: Money = Field(description="The account's balance after this transaction.")
    transaction_type: TransactionType = "Unknown"


class TransactionsIn(StrictApiModel):
    transactions: list[TransactionIn] = Field(
        min_length=1,
        max_length=MAX_PER_REQUEST,
        description="Cleared transactions of one account, earliest first.",
    )


class TransactionsAccepted(ApiModel):
    account_id: str
    accepted: list[str] = Field(
        description="Ids queued for delivery to the accounting platform, in the order given."
    )
    duplicates: list[str] = Field(
        description="Ids already accepted earlier (or twice in this request): not queued again."
    )


class TransactionOut(ApiModel):
    id: str
    date: datetime
    description: str
    amount: Decimal
    balance: Decimal
    transaction_type: TransactionType
    status: StatusName = Field(
        description="queued, sending (to Codat), delivered; held (queued while the feed needs mending: "
        "see the page's `held`); or failed or refused_by_codat, with `error`."
    )
    error: str | None = Field(None, description="Why it failed or was refused.")
    warning: str | None = Field(
        None,
        description="For a delivered transaction: why it may not be in QuickBooks after all (it was "
        "delivered while the account was disconnected there but not yet reported so by Codat).",
    )
    push_operation_key: str | None = Field(None, description="Codat's push operation that carried it.")
    accepted_at: UtcDateTime
    completed_at: UtcDateTime | None = None


class HoldOut(ApiModel):
    reason: str = Field(
        description="no_connection, connection_unlinked, connection_deauthorized, account_pending, "
        "account_disconnected, credentials_revoked or refused_by_codat."
    )
    message: str = Field(description="What is wrong, and the one step that mends it.")


class TransactionsPage(ApiModel):
    account_id: str
    counts: dict[StatusName, int] = Field(
        description="How many of the account's transactions are in each status (`held` is part of `queued`)."
    )
    transactions: list[TransactionOut] = Field(description="In the order they were accepted.")
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null on the last one.")
    held: HoldOut | None = Field(
        None,
        description="Why deliveries to the accounting platform are held now; they resume in order once it "
        "is mended.",
    )
    accepts_from: date | None = Field(
        None,
        description="The earliest cleared date the account accepts now, by the platform it feeds. "
        "QuickBooks Online: yesterday, or on its first write 7 days before its feed start date. Xero: 365 "
        "days before today's date at UTC+14 (Codat names no time zone for Xero's year). Null for a "
        "platform with no such limit (Sage, NetSuite, FreeAgent, Exact), and until the account is connected.",
    )
