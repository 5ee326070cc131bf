"""Codat webhooks: verify, store under the `webhook-id`, then apply exactly once.

The event row and its effects commit together: the claim (`processed_at` set where it was null) is in the
same transaction as the status changes, so a crash leaves the event unprocessed, never half-applied, and a
redelivery (same `webhook-id`) or the sweeper finishes it.
"""

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prometheus_client import Counter
from pydantic import BaseModel
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from svix.webhooks import Webhook, WebhookVerificationError

from app.audit.trail import CODAT, Audit, record
from app.bankfeed.changes import ChangeFeed
from app.bankfeed.repository import BankFeedRepository
from app.clock import Clock, SystemClock, as_utc
from app.db import ignoring_conflicts, rows_changed
from app.errors import InvalidInput, Unauthorized
from app.rawpool import RawPool
from app.redaction import scrub, scrub_text
from app.transactions.service import apply_push_event
from app.webhooks.follow_ups import FOLLOW_UPS
from app.webhooks.models import EVENTS_TABLE, WebhookEvent
from app.webhooks.payloads import RejectedEvent, parse_event
from app.webhooks.settled_push import store_if_settled

log = logging.getLogger(__name__)
APPLIED_STATUS, REJECTED_STATUS, DEAD_STATUS = "applied", "rejected", "dead"
ERROR_LENGTH = 1000
PUSH_OUTCOME_PREFIX = "bankTransactions.write."
WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,100}")
EVENTS = Counter("bff_codat_webhooks_total", "Codat webhook events received", ["event_type", "outcome"])
REJECTED = Counter("bff_webhooks_rejected_total", "Signed webhook events refused: they did not parse")
DEAD = Counter("bff_webhooks_dead_total", "Webhook events parked as dead after failing every attempt")
RATE_LIMIT_EVENTS = Counter(
    "bff_codat_rate_limit_events_total", "Codat client.rateLimit.* events", ["event_type"]
)


def verify(secret: str, body: bytes, headers: dict[str, str]) -> object:
    """The event, if Codat signed it recently; 401 otherwise (bad signature, malformed or missing headers,
    stale time), 422 for a signed body that is not JSON. Never an exception of ours for junk."""
    try:
        Webhook(secret).verify(body, headers)
    # svix raises ValueError (a signature without a comma, `v1,a,b`, bad base64) or UnicodeDecodeError (a
    # non-UTF-8 body) for some malformed input instead of its own error: all of them are refusals.
    except (WebhookVerificationError, ValueError, TypeError) as exc:
        EVENTS.labels("unverified", "refused").inc()
        reason = str(exc) if isinstance(exc, WebhookVerificationError) else "malformed signature or body"
        raise Unauthorized(f"Webhook signature refused: {reason}.") from exc
    try:
        return json.loads(body)
    except ValueError as exc:
        REJECTED.inc()
        log.warning("webhook.rejected", extra={"field": "body", "reason": "not JSON"})
        raise InvalidInput.for_field("body", "not JSON") from exc


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


@dataclass(frozen=True)
class RetryPolicy:
    """How often a stored event that fails to apply is tried, and how long to wait between tries."""

    max_attempts: int = 5
    backoff_seconds: float = 30.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=self.backoff_seconds * 2 ** (attempts - 1))


class WebhookProcessor:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        changes: ChangeFeed,
        *,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.sessions = sessions
        self.changes = changes
        engine: AsyncEngine = sessions.kw["bind"]
        # Where a settled push's webhook is stored in one statement (Postgres only): see _store_settled_push.
        self.raw = RawPool.of(engine) if engine.dialect.name == "postgresql" else None
        self.clock = clock or SystemClock()
        self.retry = retry or RetryPolicy()

    async def receive(self, webhook_id: str, event: object, received_at: datetime) -> None:
        """Store the event, then apply it; a signed event that does not parse is stored as rejected (and
        InvalidInput raised), and one that fails to apply stays stored, to be retried by the backlog."""
        if not WEBHOOK_ID.fullmatch(webhook_id):
            REJECTED.inc()
            raise InvalidInput.for_field("webhook-id", "at most 100 printable characters")
        try:
            envelope = parse_event(event, self.clock.now())
        except RejectedEvent as exc:
            await self._store_rejected(webhook_id, event, received_at, exc)
            raise InvalidInput.for_field(exc.field, exc.reason) from exc
        assert isinstance(event, dict)  # parse_event has checked it
        now = self.clock.now()
        try:
            if await self._store_settled_push(webhook_id, event, received_at, now):
                EVENTS.labels(envelope.eventType, "stored").inc()
                EVENTS.labels(envelope.eventType, "applied").inc()
                return
            new, changed_business = await self._store_applied(webhook_id, event, received_at, now)
        except Exception as exc:  # noqa: BLE001 - stored alone, then retried like any failure to apply
            async with self.sessions.begin() as session:
                new = await self._store(session, webhook_id, event, received_at)
            EVENTS.labels(envelope.eventType, "stored" if new else "duplicate").inc()
            if new:
                await self._record_failure(webhook_id, exc, now)
            return
        if not new:
            EVENTS.labels(envelope.eventType, "duplicate").inc()
            await self.process(webhook_id)  # stored before but not applied yet, it may be due now
            return
        EVENTS.labels(envelope.eventType, "stored").inc()
        EVENTS.labels(envelope.eventType, "applied").inc()
        if changed_business is not None:
            self.changes.notify(changed_business)

    async def _store_settled_push(
        self, webhook_id: str, event: dict[str, Any], received_at: datetime, now: datetime
    ) -> bool:
        """On Postgres, a new push-outcome event whose push no batch is pending on (the worker has recorded
        its outcome: the common case) stored as applied, with its audit entry, in one statement
        (app/webhooks/settled_push.py); False when it was not, and the usual path is to run (SQLite, another
        event type, a pending batch, a redelivery)."""
        event_type: str = event["eventType"]
        if self.raw is None or not event_type.startswith(PUSH_OUTCOME_PREFIX):
            return False
        push_operation_key = event["payload"].get("id")
        if not isinstance(push_operation_key, str):
            return False  # a write event whose payload we do not know: the usual path stores it as before
        row = _event_row(webhook_id, event, received_at, processed_at=now)
        entry = webhook_audit(None, event_type, webhook_id, APPLIED_STATUS)
        return await store_if_settled(self.raw, push_operation_key, row, entry, now)

    async def _store_applied(
        self, webhook_id: str, event: dict[str, Any], received_at: datetime, now: datetime
    ) -> tuple[bool, str | None]:
        """A new event stored as applied, with its effects, in one transaction: the common case costs one
        transaction rather than two (store, then claim and apply). (False, None) when it was stored before;
        otherwise (True, the business whose feed changed, if any)."""
        async with self.sessions.begin() as session:
            if not await self._store(session, webhook_id, event, received_at, processed_at=now):
                return False, None
            stored = json.loads(without_secrets(event))  # what a retry would apply
            return True, await self._apply(
                session, webhook_id, stored, parse_time(event.get("generatedDate")), now
            )

    async def _store_rejected(
        self, webhook_id: str, event: object, received_at: datetime, exc: RejectedEvent
    ) -> None:
        event_type = event.get("eventType") if isinstance(event, dict) else None
        row = {
            "id": webhook_id,
            "event_type": event_type[:100] if isinstance(event_type, str) else "",
            "received_at": received_at,
            "processed_at": received_at,
            "body": json.dumps(scrub(event)),  # kept for the operator; it may hold a secret anywhere
            "status": REJECTED_STATUS,
            "error": str(exc)[:ERROR_LENGTH],
        }
        async with self.sessions.begin() as session:
            await session.execute(ignoring_conflicts(session, EVENTS_TABLE, ["id"]), row)
            record(
                session,
                webhook_audit(None, str(row["event_type"]), webhook_id, "rejected"),
                received_at,
            )
        REJECTED.inc()
        log.warning(
            "webhook.rejected", extra={"webhook_id": webhook_id, "field": exc.field, "reason": exc.reason}
        )

    async def _store(
        self,
        session: AsyncSession,
        webhook_id: str,
        event: dict[str, Any],
        received_at: datetime,
        processed_at: datetime | None = None,
    ) -> bool:
        row = _event_row(webhook_id, event, received_at, processed_at)
        # The row as parameters, not as VALUES: a statement holding its values is compiled again each time
        # (a tenth of the CPU of each webhook).
        result = await session.execute(ignoring_conflicts(session, EVENTS_TABLE, ["id"]), row)
        return rows_changed(result) == 1

    async def process(self, webhook_id: str) -> None:
        """Apply the event unless it already was, or is waiting for its next try; the claim and the effects
        commit together. A failure is recorded (retry later, or dead) and never raised: one poison event must
        not stop the rest of the backlog."""
        now = self.clock.now()
        try:
            changed_business = await self._apply_claimed(webhook_id, now)
        except Exception as exc:  # noqa: BLE001 - whatever the cause, the event is retried, then parked
            await self._record_failure(webhook_id, exc, now)
            return
        if changed_business is not None:
            self.changes.notify(changed_business)

    async def _apply_claimed(self, webhook_id: str, now: datetime) -> str | None:
        async with self.sessions.begin() as session:
            claimed = await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == webhook_id, WebhookEvent.processed_at.is_(None))
                .where(or_(WebhookEvent.next_attempt_at.is_(None), WebhookEvent.next_attempt_at <= now))
                .values(processed_at=now, status=APPLIED_STATUS, next_attempt_at=None)
                .returning(WebhookEvent.body, WebhookEvent.generated_at)
            )
            row = claimed.one_or_none()
            if row is None:
                return None
            event = json.loads(row.body)
            changed_business = await self._apply(session, webhook_id, event, row.generated_at, now)
        EVENTS.labels(event["eventType"], "applied").inc()
        return changed_business

    async def _apply(
        self,
        session: AsyncSession,
        webhook_id: str,
        event: dict[str, Any],
        generated_at: datetime | None,
        now: datetime,
    ) -> str | None:
        """The effects of a claimed event, in the claim's transaction."""
        repo = BankFeedRepository(session)
        changed_business = await apply(repo, event, generated_at)
        # The business's timeline shows what Codat told us and when; an event that changed no business's
        # feed (a repeat, a push outcome) is still in the trail, without a business.
        record(session, webhook_audit(changed_business, event["eventType"], webhook_id, "applied"), now)
        if changed_business is not None:
            await repo.bump_feed_version(changed_business)  # last: see the repository's lock order
        return changed_business

    async def _record_failure(self, webhook_id: str, exc: Exception, now: datetime) -> None:
        error = scrub_text(f"{type(exc).__name__}: {exc}")[:ERROR_LENGTH]
        async with self.sessions.begin() as session:
            event = await session.get(WebhookEvent, webhook_id, with_for_update=True)
            if event is None or event.processed_at is not None:
                return
            event.attempts += 1
            event.error = error
            if event.attempts >= self.retry.max_attempts:
                event.status, event.processed_at, event.next_attempt_at = DEAD_STATUS, now, None
                record(session, webhook_audit(None, event.event_type, webhook_id, "dead"), now)
            else:
                event.next_attempt_at = now + self.retry.delay(event.attempts)
            attempts, dead = event.attempts, event.status == DEAD_STATUS
        if dead:
            DEAD.inc()
            log.error("webhook.dead", extra={"webhook_id": webhook_id, "attempts": attempts, "error": error})
        else:
            log.warning(
                "webhook.apply_failed", extra={"webhook_id": webhook_id, "attempts": attempts, "error": error}
            )

    async def process_backlog(self, limit: int = 100) -> int:
        """Process events stored but not applied (a crash between the two, or a failure waiting for its next
        try); returns how many were due."""
        now = self.clock.now()
        async with self.sessions() as session:
            ids = (
                await session.scalars(
                    select(WebhookEvent.id)
                    .where(WebhookEvent.processed_at.is_(None))
                    .where(or_(WebhookEvent.next_attempt_at.is_(None), WebhookEvent.next_attempt_at <= now))
                    .order_by(WebhookEvent.received_at)
                    .limit(limit)
                )
            ).all()
        for webhook_id in ids:
            await self.process(webhook_id)
        return len(ids)


def _event_row(
    webhook_id: str, event: dict[str, Any], received_at: datetime, processed_at: datetime | None = None
) -> dict[str, Any]:
    """The stored event's columns: received, or applied at `processed_at`."""
    row = {
        "id": webhook_id,
        "event_type": event["eventType"],
        "generated_at": parse_time(event.get("generatedDate")),
        "received_at": received_at,
        "body": without_secrets(event),
    }
    if processed_at is not None:
        row |= {"processed_at": processed_at, "status": APPLIED_STATUS}
    return row


def webhook_audit(business_id: str | None, event_type: str, webhook_id: str, outcome: str) -> Audit:
    """One Codat webhook in, for the audit trail: the event type (up to 100 characters) goes in the detail,
    so the action stays one short, searchable word."""
    return Audit(business_id, CODAT, "webhook.received", outcome, f"{event_type} ({webhook_id})")


async def apply(repo: BankFeedRepository, event: dict[str, Any], generated_at: datetime | None) -> str | None:
    """Apply one event, then its follow-up (app/webhooks/follow_ups.py); the business id whose bank feed
    changed, if any."""
    event_type: str = event["eventType"]
    payload = event.get("payload") or {}
    at = generated_at or datetime.now(UTC)
    changed = await _apply_status(repo, event_type, payload, at)
    follow_up = FOLLOW_UPS.get(event_type)
    if follow_up is not None:
        changed = await follow_up(repo, payload, at) or changed
    return changed


async def _apply_status(
    repo: BankFeedRepository, event_type: str, payload: dict[str, Any], at: datetime
) -> str | None:
    if event_type.startswith("connection."):
        connection = payload.get("connection") or {}
        return await repo.apply_connection_status(
            str(connection.get("id")), str(connection.get("status")), at
        )
    if event_type in ("bankFeeds.sourceAccount.connected", "bankFeeds.sourceAccount.disconnected"):
        return await _apply_source_account(repo, event_type, payload, at)
    if event_type.startswith(PUSH_OUTCOME_PREFIX):
        await apply_push_event(repo.session, event_type, payload, at)
        return None
    if event_type.startswith("client.rateLimit."):
        RATE_LIMIT_EVENTS.labels(event_type).inc()
        log.warning(
            "codat.rate_limit",
            extra={"event_type": event_type, "quota_remaining": payload.get("quotaRemaining")},
        )
        return None
    if event_type not in FOLLOW_UPS:
        log.info("webhook.ignored", extra={"event_type": event_type})
    return None


async def _apply_source_account(
    repo: BankFeedRepository, event_type: str, payload: dict[str, Any], at: datetime
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


class StoredEvent(BaseModel):
    """A stored event as an operator sees it (its body is not shown: it is Codat's, less secrets)."""

    id: str
    eventType: str  # noqa: N815 - wire name
    status: Literal["received", "applied", "rejected", "dead"]
    receivedAt: datetime  # noqa: N815
    attempts: int
    error: str | None


async def list_events(
    sessions: async_sessionmaker[AsyncSession], status: str = DEAD_STATUS, limit: int = 100
) -> list[StoredEvent]:
    """Stored events in one status (dead by default), most recent first."""
    async with sessions() as session:
        rows = await session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.status == status)
            .order_by(WebhookEvent.received_at.desc())
            .limit(limit)
        )
        return [_stored_event(row) for row in rows]


async def reapply_dead_event(processor: WebhookProcessor, webhook_id: str) -> StoredEvent | None:
    """Put a dead event back in the backlog with its attempts reset and apply it now; None if there is no
    dead event with that id. The answer says how it went (applied, or received/dead with the new error)."""
    async with processor.sessions.begin() as session:
        revived = await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == webhook_id, WebhookEvent.status == DEAD_STATUS)
            .values(status="received", processed_at=None, attempts=0, next_attempt_at=None)
        )
        if revived.rowcount != 1:  # type: ignore[attr-defined]
            return None
    log.info("webhook.reapplied", extra={"webhook_id": webhook_id})
    await processor.process(webhook_id)
    async with processor.sessions() as session:
        event = await session.get(WebhookEvent, webhook_id)
        assert event is not None
        return _stored_event(event)


def _stored_event(row: WebhookEvent) -> StoredEvent:
    return StoredEvent(
        id=row.id,
        eventType=row.event_type,
        status=row.status,
        receivedAt=as_utc(row.received_at),
        attempts=row.attempts,
        error=row.error,
    )
