"""Strict models of Codat's webhook events: what does not parse here is rejected, never applied.

One envelope for every event (Standard Webhooks layout), and one payload model per event type in
`PAYLOAD_MODELS`; a new event type plugs in by adding its model there. Statuses are Codat's enums (see
/work/shared/reference/codat-api.md §4, §5, §7), so a value Codat does not send ("suspended", "Hacked") is
refused at the door instead of reaching our tables and the user's view.
"""

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from app.clock import as_utc

# Codat retries a failed delivery for about 28 hours and the Portal can replay older ones; a clock a few
# minutes ahead is tolerated. An event dated beyond these is refused: a year-9999 date would otherwise win
# every "newer than what we have" comparison and freeze the status.
MAX_AGE = timedelta(days=30)
MAX_AHEAD = timedelta(minutes=5)

# Ids and type names: printable, bounded (our columns hold 100 characters).
M = TypeVar("M", bound=BaseModel)
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Strict(BaseModel):
    # Codat adds fields over time: unknown ones are ignored; the ones we read must be exactly right.
    model_config = ConfigDict(extra="ignore")


class Envelope(_Strict):
    id: Name
    eventType: Name  # noqa: N815 - wire name
    generatedDate: datetime  # noqa: N815 - Codat's DateTime: UTC when it carries no offset
    payload: dict[str, Any]


class ConnectionRef(_Strict):
    id: Name
    status: Literal["PendingAuth", "Linked", "Unlinked", "Deauthorized"]


class ConnectionPayload(_Strict):
    connection: ConnectionRef


class SourceAccountRef(_Strict):
    id: Name
    status: Literal["pending", "connected", "connecting", "disconnected", "unknown"] | None = None
    feedStartDate: date | datetime | None = None  # noqa: N815 - a date (v2) or a DateTime (v1)


class SourceAccountPayload(_Strict):
    connectionId: Name  # noqa: N815
    sourceAccount: SourceAccountRef  # noqa: N815


class PushOperationPayload(_Strict):
    id: Name
    status: Literal["Pending", "Failed", "Success", "TimedOut"]


class RateLimitPayload(_Strict):
    dailyQuota: int  # noqa: N815
    quotaRemaining: int  # noqa: N815
    expiryDate: datetime  # noqa: N815


_CONNECTION_EVENTS = ("created", "connected", "failed", "disconnected", "reconnected", "deleted")
PAYLOAD_MODELS: dict[str, type[BaseModel]] = {
    **{f"connection.{name}": ConnectionPayload for name in _CONNECTION_EVENTS},
    "bankFeeds.sourceAccount.connected": SourceAccountPayload,
    "bankFeeds.sourceAccount.disconnected": SourceAccountPayload,
    "bankTransactions.write.successful": PushOperationPayload,
    "bankTransactions.write.unsuccessful": PushOperationPayload,
    "client.rateLimit.reached": RateLimitPayload,
    "client.rateLimit.reset": RateLimitPayload,
}


class RejectedEvent(Exception):
    """A signed event that does not parse; `field` names where, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_event(event: object, now: datetime) -> Envelope:
    """The event's envelope once it and its payload (if a type we know) are valid; RejectedEvent if not."""
    envelope = _validate(Envelope, event, "")
    model = PAYLOAD_MODELS.get(envelope.eventType)
    if model is not None:
        _validate(model, envelope.payload, "payload.")
    generated = as_utc(envelope.generatedDate)
    if not now - MAX_AGE <= generated <= now + MAX_AHEAD:
        raise RejectedEvent("generatedDate", "too far from the current time")
    return envelope


def _validate(model: type[M], data: object, prefix: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RejectedEvent(f"{prefix}{where}".rstrip(".") or "body", first["msg"]) from exc
