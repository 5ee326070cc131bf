"""Bodies of the subscription API."""

from pydantic import Field

from app.bankfeed.schemas import ApiModel, StrictApiModel, UtcDateTime
from app.events.models import EventType


class SubscriptionIn(StrictApiModel):
    url: str = Field(
        max_length=2000, description="Where events are POSTed: http(s), a public address in prod."
    )
    event_types: list[EventType] = Field(min_length=1, description="The event types wanted.")
    business_id: str | None = Field(None, max_length=64, description="Only this business's events, if set.")


class SubscriptionOut(ApiModel):
    id: str
    url: str
    event_types: list[EventType]
    business_id: str | None
    enabled: bool
    disabled_reason: str | None
    failing_since: UtcDateTime | None
    created_by: str
    created_at: UtcDateTime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(
        description="The `whsec_…` signing secret: shown this once, keep it in a secret store."
    )


class ReplayIn(StrictApiModel):
    since: UtcDateTime = Field(
        description="Send again every event for this subscription created at or after this."
    )


class ReplayOut(ApiModel):
    queued: int
