"""Send due deliveries to subscribers, signed in the Standard Webhooks format.

Signed with svix's `Webhook`, the maintained Standard Webhooks library that verifies Codat's webhooks to us;
any Standard Webhooks library verifies ours. The `webhook-id` is the event's id, the same on every attempt
and every resend, so a subscriber drops repeats by it. At least once: a delivery is marked delivered only
after a 2xx. Per (subscription, business) only the oldest pending delivery is attempted (so each business's
events arrive in order); it is retried with backoff for `retry_for_seconds`, then parked `failed`, which
lets the next one go. A subscription that has not had a success for `disable_after_seconds` is disabled:
its deliveries wait, untouched, until an operator enables it again.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import Counter
from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from svix.webhooks import Webhook

from app.audit.trail import SYSTEM, Audit, record
from app.clock import Clock, as_utc
from app.config import EventsSettings
from app.events.models import DeliveryStatus, EventDelivery, EventSubscription, OutboundEvent
from app.events.ssrf import TargetRefused, check_target

log = logging.getLogger(__name__)
DELIVERIES = Counter("bff_event_deliveries_total", "Outbound event delivery attempts", ["outcome"])
DISABLED = Counter("bff_event_subscriptions_disabled_total", "Subscriptions disabled after failing too long")


@dataclass(frozen=True)
class Attempt:
    delivery_id: int
    event_id: str
    body: str
    url: str
    secret: str


@dataclass(frozen=True)
class DeliveryPolicy:
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0
    batch: int = 50


class Deliverer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        clock: Clock,
        settings: EventsSettings,
        *,
        allow_private: bool,
        policy: DeliveryPolicy = DeliveryPolicy(),
    ) -> None:
        self.sessions = sessions
        self.http = http
        self.clock = clock
        self.settings = settings
        self.allow_private = allow_private
        self.policy = policy

    async def deliver_due(self) -> int:
        """Attempt every delivery due now (one per subscription and business); how many were attempted."""
        attempts = await self._claim()
        outcomes = await asyncio.gather(*(self._send(a) for a in attempts))
        for attempt, error in zip(attempts, outcomes, strict=True):
            async with self.sessions.begin() as session:
                await self._record(session, attempt, error, self.clock.now())
        return len(attempts)

    async def _claim(self) -> list[Attempt]:
        now = self.clock.now()
        lease = now + timedelta(seconds=self.settings.request_timeout_seconds * 2 + 5)
        async with self.sessions.begin() as session:
            rows = (await session.execute(_due(now, self.policy.batch))).all()
            for delivery, _, _ in rows:
                delivery.lease_until = lease
            return [
                Attempt(d.id, event.id, event.body, sub.url, sub.signing_secret) for d, event, sub in rows
            ]

    async def _send(self, attempt: Attempt) -> str | None:
        """None when the subscriber took it (2xx); otherwise why not, for the record (never its body)."""
        try:
            await check_target(attempt.url, allow_private=self.allow_private)
        except TargetRefused as exc:
            return f"target refused: {exc}"
        # The signature's timestamp is the real time: receivers compare it with their own clocks.
        sent_at = datetime.now(UTC)
        signature = Webhook(attempt.secret).sign(attempt.event_id, sent_at, attempt.body)
        headers = {
            "content-type": "application/json",
            "webhook-id": attempt.event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = await self.http.post(
                attempt.url,
                content=attempt.body,
                headers=headers,
                timeout=self.settings.request_timeout_seconds,
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"
        return None if response.is_success else f"HTTP {response.status_code}"

    async def _record(
        self, session: AsyncSession, attempt: Attempt, error: str | None, now: datetime
    ) -> None:
        delivery = await session.get(EventDelivery, attempt.delivery_id, with_for_update=True)
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return  # resent or cleared meanwhile
        subscription = await session.get(EventSubscription, delivery.subscription_id, with_for_update=True)
        assert subscription is not None
        delivery.attempts += 1
        delivery.lease_until = None
        if error is None:
            DELIVERIES.labels("delivered").inc()
            delivery.status, delivery.completed_at, delivery.last_error = DeliveryStatus.DELIVERED, now, None
            subscription.failing_since = None
            audit = Audit(
                delivery.business_id, SYSTEM, "event.delivered", "ok", _about(attempt, subscription)
            )
            record(session, audit, now)
            return
        DELIVERIES.labels("failed_attempt").inc()
        delivery.last_error = error
        if now - as_utc(delivery.created_at) >= timedelta(seconds=self.settings.retry_for_seconds):
            delivery.status, delivery.completed_at = DeliveryStatus.FAILED, now
            DELIVERIES.labels("parked").inc()
            log.warning("events.delivery_parked", extra={"delivery": delivery.id, "error": error})
            detail = f"{_about(attempt, subscription)}: gave up after {delivery.attempts} attempts ({error})"
            record(session, Audit(delivery.business_id, SYSTEM, "event.failed", "parked", detail), now)
        else:
            delivery.next_attempt_at = now + timedelta(seconds=self._backoff(delivery.attempts))
        subscription.failing_since = subscription.failing_since or now
        if now - as_utc(subscription.failing_since) >= timedelta(seconds=self.settings.disable_after_seconds):
            disable(session, subscription, f"no successful delivery since {subscription.failing_since}", now)

    def _backoff(self, attempts: int) -> float:
        return min(self.policy.retry_base_seconds * 2.0 ** (attempts - 1), self.policy.retry_max_seconds)


def disable(
    session: AsyncSession, subscription: EventSubscription, reason: str, now: datetime, actor: str = SYSTEM
) -> None:
    """Stop delivering to a failing endpoint, and tell the operator: a metric, an error log, the console."""
    subscription.enabled = False
    subscription.disabled_reason = reason
    DISABLED.inc()
    log.error("events.subscription_disabled", extra={"subscription": subscription.id, "reason": reason})
    detail = f"subscription {subscription.id} disabled: {reason}"
    record(session, Audit(subscription.business_id, actor, "subscription.disabled", "disabled", detail), now)


def _about(attempt: Attempt, subscription: EventSubscription) -> str:
    return f"{attempt.event_id} to subscription {subscription.id}"


def _due(now: datetime, limit: int):  # type: ignore[no-untyped-def]
    """Pending deliveries due now whose subscription is enabled and that have no older pending sibling."""
    older = aliased(EventDelivery)
    has_older = exists().where(
        older.subscription_id == EventDelivery.subscription_id,
        older.business_id == EventDelivery.business_id,
        older.status == DeliveryStatus.PENDING,
        older.id < EventDelivery.id,
    )
    return (
        select(EventDelivery, OutboundEvent, EventSubscription)
        .join(OutboundEvent, OutboundEvent.seq == EventDelivery.event_seq)
        .join(EventSubscription, EventSubscription.id == EventDelivery.subscription_id)
        .where(
            EventDelivery.status == DeliveryStatus.PENDING,
            EventSubscription.enabled,
            EventDelivery.next_attempt_at <= now,
            or_(EventDelivery.lease_until.is_(None), EventDelivery.lease_until < now),
            ~has_older,
        )
        .order_by(EventDelivery.id)
        .limit(limit)
        .with_for_update(of=EventDelivery, skip_locked=True)
    )
