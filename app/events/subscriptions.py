"""Subscriptions: make one (with its own secret), list them, enable or disable, replay and resend events."""

import base64
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.trail import Audit, record
from app.errors import FieldError, InvalidInput, NotFound
from app.events.delivery import disable
from app.events.models import EventDelivery, EventSubscription, OutboundEvent
from app.events.outbox import new_delivery, wants
from app.events.schemas import SubscriptionIn, SubscriptionOut
from app.events.ssrf import TargetRefused, check_target


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"


class EventNotFound(NotFound):
    code = "event_not_found"


def subscription_out(subscription: EventSubscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id,
        url=subscription.url,
        event_types=subscription.event_types.split(),
        business_id=subscription.business_id,
        enabled=subscription.enabled,
        disabled_reason=subscription.disabled_reason,
        failing_since=subscription.failing_since,
        created_by=subscription.created_by,
        created_at=subscription.created_at,
    )


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def create(
    session: AsyncSession,
    body: SubscriptionIn,
    *,
    allow_private: bool,
    actor: str,
    now: datetime,
) -> tuple[EventSubscription, str]:
    """The new subscription and its signing secret (in clear only in this answer)."""
    try:
        await check_target(body.url, allow_private=allow_private)
    except TargetRefused as exc:
        raise InvalidInput(
            "The subscription's URL is not allowed.", fields=[FieldError(field="url", reason=str(exc))]
        ) from None
    secret = new_signing_secret()
    subscription = EventSubscription(
        id=f"sub_{uuid.uuid4().hex}",
        url=body.url,
        event_types=" ".join(sorted(set(body.event_types))),
        business_id=body.business_id,
        signing_secret=secret,
        enabled=True,
        created_by=actor,
        created_at=now,
    )
    session.add(subscription)
    detail = f"subscription {subscription.id} to {body.url} for {subscription.event_types}"
    record(session, Audit(body.business_id, actor, "subscription.created", "ok", detail), now)
    return subscription, secret


async def list_all(session: AsyncSession) -> Sequence[EventSubscription]:
    return (await session.scalars(select(EventSubscription).order_by(EventSubscription.created_at))).all()


async def require(session: AsyncSession, subscription_id: str) -> EventSubscription:
    subscription = await session.get(EventSubscription, subscription_id, with_for_update=True)
    if subscription is None:
        raise SubscriptionNotFound("No such subscription.")
    return subscription


async def set_enabled(
    session: AsyncSession, subscription_id: str, enabled: bool, *, actor: str, now: datetime
) -> EventSubscription:
    subscription = await require(session, subscription_id)
    if enabled:
        subscription.enabled, subscription.disabled_reason, subscription.failing_since = True, None, None
        detail = f"subscription {subscription.id} enabled"
        record(session, Audit(subscription.business_id, actor, "subscription.enabled", "ok", detail), now)
    elif subscription.enabled:
        disable(session, subscription, f"disabled by {actor}", now, actor=actor)
    return subscription


async def replay(
    session: AsyncSession, subscription_id: str, since: datetime, *, actor: str, now: datetime
) -> int:
    """Queue again every event for the subscription since `since` (same `webhook-id`s); how many."""
    subscription = await require(session, subscription_id)
    events = (
        await session.scalars(
            select(OutboundEvent).where(OutboundEvent.created_at >= since).order_by(OutboundEvent.seq)
        )
    ).all()
    chosen = [e for e in events if wants(subscription, e.business_id, e.event_type)]
    for event in chosen:
        session.add(new_delivery(event, subscription.id, now))
    detail = f"{len(chosen)} events since {since.isoformat()} queued again for subscription {subscription.id}"
    record(session, Audit(subscription.business_id, actor, "subscription.replayed", "ok", detail), now)
    return len(chosen)


async def resend(
    session: AsyncSession,
    event_id: str,
    subscription_id: str,
    *,
    actor: str,
    now: datetime,
    business_id: str | None = None,
) -> EventDelivery:
    """Queue one event (of `business_id`, if given) again for one subscription, same `webhook-id`."""
    event = await session.scalar(select(OutboundEvent).where(OutboundEvent.id == event_id))
    if event is None or business_id not in (None, event.business_id):
        raise EventNotFound("No such event.")
    subscription = await require(session, subscription_id)
    delivery = new_delivery(event, subscription.id, now)
    session.add(delivery)
    detail = f"event {event.id} ({event.event_type}) queued again for subscription {subscription.id}"
    record(session, Audit(event.business_id, actor, "event.resent", "ok", detail), now)
    return delivery


async def deliveries_of(
    session: AsyncSession, business_id: str, limit: int = 50
) -> Sequence[tuple[EventDelivery, OutboundEvent]]:
    query = (
        select(EventDelivery, OutboundEvent)
        .join(OutboundEvent, OutboundEvent.seq == EventDelivery.event_seq)
        .where(EventDelivery.business_id == business_id)
        .order_by(EventDelivery.id.desc())
        .limit(limit)
    )
    return [(d, e) for d, e in (await session.execute(query)).all()]
