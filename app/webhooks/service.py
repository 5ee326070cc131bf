"""Codat webhooks: verify, store under the `webhook-id`, then apply exactly once.

The event row and its effects commit together: the claim (`processed_at` set where it was null) is in the
same transaction as the status changes, so a crash leaves the event unprocessed, never half-applied, and a
redelivery (same `webhook-id`) or the sweeper finishes it.
"""

import json
import logging
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from svix.webhooks import Webhook, WebhookVerificationError

from app.clock import as_utc
from app.db import insert_ignoring_conflicts
from app.errors import InvalidInput, Unauthorized
from app.onboarding.changes import ChangeFeed
from app.onboarding.repository import OnboardingRepository
from app.transactions.service import apply_push_event
from app.webhooks.models import WebhookEvent

log = logging.getLogger(__name__)
EVENTS = Counter("bff_codat_webhooks_total", "Codat webhook events received", ["event_type", "outcome"])
RATE_LIMIT_EVENTS = Counter(
    "bff_codat_rate_limit_events_total", "Codat client.rateLimit.* events", ["event_type"]
)


def verify(secret: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The event, if Codat signed it recently; 401 otherwise (bad signature, missing headers, stale time)."""
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError as exc:
        EVENTS.labels("unverified", "refused").inc()
        raise Unauthorized(f"Webhook signature refused: {exc}.") from exc
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("The webhook body is not JSON.") from exc
    if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
        raise InvalidInput("The webhook body has no eventType.")
    return event


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return as_utc(moment)


def without_secrets(event: dict[str, Any]) -> str:
    connection = event.get("payload", {}).get("connection")
    if isinstance(connection, dict) and "linkUrl" in connection:
        event = {
            **event,
            "payload": {**event["payload"], "connection": {**connection, "linkUrl": "[redacted]"}},
        }
    return json.dumps(event)


class WebhookProcessor:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], changes: ChangeFeed) -> None:
        self.sessions = sessions
        self.changes = changes

    async def receive(self, webhook_id: str, event: dict[str, Any], received_at: datetime) -> None:
        async with self.sessions.begin() as session:
            new = await self._store(session, webhook_id, event, received_at)
        EVENTS.labels(event["eventType"], "stored" if new else "duplicate").inc()
        await self.process(webhook_id)

    async def _store(
        self, session: AsyncSession, webhook_id: str, event: dict[str, Any], received_at: datetime
    ) -> bool:
        row = {
            "id": webhook_id,
            "event_type": event["eventType"],
            "generated_at": parse_time(event.get("generatedDate")),
            "received_at": received_at,
            "body": without_secrets(event),
        }
        result = await session.execute(insert_ignoring_conflicts(session, WebhookEvent, [row], ["id"]))
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def process(self, webhook_id: str) -> None:
        """Apply the event unless it already was; the claim and the effects commit together."""
        async with self.sessions.begin() as session:
            claimed = await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == webhook_id, WebhookEvent.processed_at.is_(None))
                .values(processed_at=datetime.now(UTC))
                .returning(WebhookEvent.body, WebhookEvent.generated_at)
            )
            row = claimed.one_or_none()
            if row is None:
                return
            repo = OnboardingRepository(session)
            event = json.loads(row.body)
            changed_business = await apply(repo, event, row.generated_at)
            if changed_business is not None:
                await repo.bump_feed_version(changed_business)  # last: see the repository's lock order
        EVENTS.labels(event["eventType"], "applied").inc()
        if changed_business is not None:
            self.changes.notify(changed_business)

    async def process_backlog(self, limit: int = 100) -> int:
        """Process events stored but not applied (a crash between the two); returns how many were found."""
        async with self.sessions() as session:
            ids = (
                await session.scalars(
                    select(WebhookEvent.id)
                    .where(WebhookEvent.processed_at.is_(None))
                    .order_by(WebhookEvent.received_at)
                    .limit(limit)
                )
            ).all()
        for webhook_id in ids:
            await self.process(webhook_id)
        return len(ids)


async def apply(
    repo: OnboardingRepository, event: dict[str, Any], generated_at: datetime | None
) -> str | None:
    """Apply one event; the business id whose bank feed changed, if any."""
    event_type: str = event["eventType"]
    payload = event.get("payload") or {}
    at = generated_at or datetime.now(UTC)
    if event_type.startswith("connection."):
        connection = payload.get("connection") or {}
        return await repo.apply_connection_status(
            str(connection.get("id")), str(connection.get("status")), at
        )
    if event_type in ("bankFeeds.sourceAccount.connected", "bankFeeds.sourceAccount.disconnected"):
        return await _apply_source_account(repo, event_type, payload, at)
    if event_type.startswith("bankTransactions.write."):
        await apply_push_event(repo.session, event_type, payload, at)
        return None
    if event_type.startswith("client.rateLimit."):
        RATE_LIMIT_EVENTS.labels(event_type).inc()
        log.warning(
            "codat.rate_limit",
            extra={"event_type": event_type, "quota_remaining": payload.get("quotaRemaining")},
        )
        return None
    log.info("webhook.ignored", extra={"event_type": event_type})
    return None


async def _apply_source_account(
    repo: OnboardingRepository, event_type: str, payload: dict[str, Any], at: datetime
) -> str | None:
    account = payload.get("sourceAccount") or {}
    status = account.get("status") or event_type.rsplit(".", 1)[1]
    feed_start = parse_time(account.get("feedStartDate"))
    return await repo.apply_account_status(
        str(payload.get("connectionId")),
        str(account.get("id")),
        status,
        feed_start.date() if feed_start else None,
        at,
    )
