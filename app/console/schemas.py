"""What the console's API answers."""

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from app.bankfeed.schemas import ApiModel, BankFeedOut
from app.events.schemas import SubscriptionOut

Health = Literal["needs_action", "broken", "stalled", "held", "failed", "dead_webhooks", "all"]


class FeedRow(ApiModel):
    model_config = ConfigDict(from_attributes=True)

    business_id: str
    business_name: str = Field(validation_alias="name", serialization_alias="businessName")
    action: str
    connection_status: str | None
    broken: bool
    stalled: bool
    held_count: int
    failed_count: int
    updated_at: datetime


class FeedPage(ApiModel):
    feeds: list[FeedRow]
    next_cursor: str | None


class TransactionRow(ApiModel):
    account_id: str
    transaction_id: str
    status: str
    error: str | None
    retryable: bool
    accepted_at: datetime


class TimelineEntry(ApiModel):
    id: int
    at: datetime
    actor: str
    action: str
    outcome: str
    detail: str


class DeadWebhook(ApiModel):
    id: str
    event_type: str
    received_at: datetime
    attempts: int
    error: str | None


class OutboundRow(ApiModel):
    event_id: str
    event_type: str
    subscription_id: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime


class BusinessPage(ApiModel):
    feed: BankFeedOut
    transaction_counts: dict[str, int]
    transactions: list[TransactionRow]
    dead_webhooks: list[DeadWebhook]
    events: list[OutboundRow]
    subscriptions: list[SubscriptionOut]
    timeline: list[TimelineEntry]


class ActionDone(ApiModel):
    action: str
    outcome: str
    detail: str
