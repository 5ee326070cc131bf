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


async def emit(
    session: AsyncSession,
    subscriptions: Sequence[EventSubscription],
    business_id: str,
    event_type: str,
    data: dict[str, Any],
    now: datetime,
) -> OutboundEvent:
    event = OutboundEvent(
        id=new_event_id(),
        business_id=business_id,
        event_type=event_type,
        body=event_body(event_type, business_id, data, now),
        created_at=now,
    )
    session.add(event)
    await session.flush()  # its seq, in insertion order: the order each business's events are delivered in
    for subscription in subscriptions:
        if wants(subscription, business_id, event_type):
            session.add(new_delivery(event, subscription.id, now))
    return event


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
