"""Put events in the outbox, one delivery per matching subscription, in the transaction of the change."""

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.models import DeliveryStatus, EventDelivery, EventSubscription, OutboundEvent


def new_event_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def wants(subscription: EventSubscription, business_id: str, event_type: str) -> bool:
    return event_type in subscription.event_types.split() and subscription.business_id in (None, business_id)


async def enabled_subscriptions(session: AsyncSession) -> Sequence[EventSubscription]:
    return (await session.scalars(select(EventSubscription).where(EventSubscription.enabled))).all()


def event_body(event_type: str, business_id: str, data: dict[str, Any], now: datetime) -> str:
    """Standard Webhooks' recommended shape: type, timestamp, data."""
    stamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": stamp, "data": {"businessId": business_id, **data}})


async def emit_all(
    session: AsyncSession,
    subscriptions: Sequence[EventSubscription],
    events: Sequence[tuple[str, str, dict[str, Any]]],
    now: datetime,
) -> list[OutboundEvent]:
    """These (business id, event type, data), in this order, with their deliveries: one INSERT for all."""
    made = [
        OutboundEvent(
            id=new_event_id(),
            business_id=business_id,
            event_type=event_type,
            body=event_body(event_type, business_id, data, now),
            created_at=now,
        )
        for business_id, event_type, data in events
    ]
    session.add_all(made)
    # Their seqs, in the order given (SQLAlchemy inserts a flush's rows in the order they were added, and
    # matches the keys it gets back to them): the order each business's events are delivered in.
    await session.flush()
    for event in made:
        for subscription in subscriptions:
            if wants(subscription, event.business_id, event.event_type):
                session.add(new_delivery(event, subscription.id, now))
    return made


def new_delivery(event: OutboundEvent, subscription_id: str, now: datetime) -> EventDelivery:
    return EventDelivery(
        event_seq=event.seq,
        subscription_id=subscription_id,
        business_id=event.business_id,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
