"""What the console reads: feeds by health (keyset-paged over the FeedState projection, whose partial
indexes keep the lists fast with many businesses), and one business's page."""

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.trail import timeline
from app.bankfeed.models import Business, FeedConnection
from app.bankfeed.view import render_bank_feed_view
from app.console.schemas import (
    BusinessPage,
    DeadWebhook,
    FeedPage,
    FeedRow,
    Health,
    OutboundRow,
    TimelineEntry,
    TransactionRow,
)
from app.events import subscriptions
from app.events.models import FeedState
from app.transactions.models import BankTransaction, TransactionStatus
from app.transactions.service import retryable
from app.webhooks.models import WebhookEvent
from app.webhooks.service import DEAD_STATUS

RECENT = 50


async def list_feeds(
    session: AsyncSession, health: Health, query: str | None, after: str | None, limit: int
) -> FeedPage:
    """Businesses in one state of health, by id, `limit` at a time after the id `after`."""
    select_rows = (
        select(*LISTED, Business.name)
        .join(Business, Business.id == FeedState.business_id)
        .order_by(FeedState.business_id)
        .limit(limit)
    )
    if health == "dead_webhooks":
        select_rows = select_rows.where(
            FeedState.business_id.in_(await businesses_with_dead_webhooks(session))
        )
    elif health != "all":
        select_rows = select_rows.where(_HEALTH[health])
    if query:
        select_rows = select_rows.where(
            or_(
                FeedState.business_id.startswith(query, autoescape=True),
                Business.name.icontains(query, autoescape=True),
            )
        )
    if after:
        select_rows = select_rows.where(FeedState.business_id > after)
    rows = [FeedRow.model_validate(row._mapping) for row in (await session.execute(select_rows)).all()]
    return FeedPage(feeds=rows, next_cursor=rows[-1].business_id if len(rows) == limit else None)


# The columns a list shows (not the snapshot), named as FeedRow's fields.
LISTED = [
    FeedState.business_id,
    FeedState.action,
    FeedState.connection_status,
    FeedState.broken,
    FeedState.stalled,
    FeedState.held_count,
    FeedState.failed_count,
    FeedState.updated_at,
]
_HEALTH = {
    # The bare boolean columns, as the partial indexes' predicates are written, so Postgres uses them.
    "needs_action": FeedState.needs_action,
    "broken": FeedState.broken,
    "stalled": FeedState.stalled,
    "held": FeedState.broken & (FeedState.held_count > 0),
    "failed": FeedState.failed_count > 0,
}


async def business_page(session: AsyncSession, business_id: str, before: int | None = None) -> BusinessPage:
    feed = await render_bank_feed_view(session, business_id)  # raises BusinessNotFound
    counts = {
        status: n
        for status, n in (
            await session.execute(
                select(BankTransaction.status, func.count())
                .where(BankTransaction.business_id == business_id)
                .group_by(BankTransaction.status)
            )
        ).all()
    }
    return BusinessPage(
        feed=feed,
        transaction_counts={s.value: counts.get(s.value, 0) for s in TransactionStatus},
        transactions=await _recent_transactions(session, business_id),
        dead_webhooks=[_dead(e) for e in await dead_webhooks_of(session, business_id)],
        events=[
            OutboundRow(
                event_id=event.id,
                event_type=event.event_type,
                subscription_id=delivery.subscription_id,
                status=delivery.status,
                attempts=delivery.attempts,
                last_error=delivery.last_error,
                created_at=delivery.created_at,
            )
            for delivery, event in await subscriptions.deliveries_of(session, business_id, RECENT)
        ],
        subscriptions=[subscriptions.subscription_out(s) for s in await subscriptions.list_all(session)],
        timeline=[
            TimelineEntry(
                id=e.id, at=e.at, actor=e.actor, action=e.action, outcome=e.outcome, detail=e.detail
            )
            for e in await timeline(session, business_id, before, RECENT)
        ],
    )


async def _recent_transactions(session: AsyncSession, business_id: str) -> list[TransactionRow]:
    """The newest transactions of each status, so a few failed ones are not hidden by many delivered."""
    rows: list[TransactionRow] = []
    for status in TransactionStatus:
        found = await session.execute(
            select(BankTransaction)
            .where(BankTransaction.business_id == business_id, BankTransaction.status == status)
            .order_by(BankTransaction.seq.desc())
            .limit(10)
        )
        rows += [
            TransactionRow(
                account_id=t.account_id,
                transaction_id=t.transaction_id,
                status=t.status,
                error=t.error,
                retryable=retryable(t.status, t.error),
                accepted_at=t.accepted_at,
            )
            for t in found.scalars()
        ]
    return rows


async def dead_webhooks_of(session: AsyncSession, business_id: str) -> list[WebhookEvent]:
    return [e for e, owner in await _dead_with_owner(session) if owner == business_id]


async def businesses_with_dead_webhooks(session: AsyncSession) -> set[str]:
    return {owner for _, owner in await _dead_with_owner(session) if owner is not None}


async def _dead_with_owner(session: AsyncSession) -> list[tuple[WebhookEvent, str | None]]:
    """Dead Codat events (few: each one is an alert) with the business each concerns, read from its body."""
    dead: Sequence[WebhookEvent] = (
        await session.scalars(
            select(WebhookEvent).where(WebhookEvent.status == DEAD_STATUS).order_by(WebhookEvent.received_at)
        )
    ).all()
    return [(event, await _owner(session, json.loads(event.body))) for event in dead]


async def _owner(session: AsyncSession, event: Any) -> str | None:
    payload = event.get("payload") if isinstance(event, dict) else None
    if not isinstance(payload, dict):
        return None
    connection = payload.get("connection")
    connection_id = connection.get("id") if isinstance(connection, dict) else payload.get("connectionId")
    if isinstance(connection_id, str):
        owner = await session.scalar(
            select(FeedConnection.business_id).where(FeedConnection.codat_connection_id == connection_id)
        )
        if owner is not None:
            return owner
    company_id = event.get("companyId") or payload.get("companyId")
    if isinstance(company_id, str):
        return await session.scalar(select(Business.id).where(Business.codat_company_id == company_id))
    return None


def _dead(event: WebhookEvent) -> DeadWebhook:
    return DeadWebhook(
        id=event.id,
        event_type=event.event_type,
        received_at=event.received_at,
        attempts=event.attempts,
        error=event.error,
    )
