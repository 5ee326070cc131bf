"""The gauges an operator alerts on, read from the database: the outbox and the webhook backlog.

Read from the tables (not counted in memory) because they are shared by every replica and worker: any
process that samples them reports the same truth. The worker samples them every
`ops.gauges_interval_seconds` (run beside the transactions worker: app/housekeeping.py).
"""

import asyncio
import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.clock import Clock, as_utc
from app.metrics import OUTBOX_OLDEST_QUEUED_AGE, OUTBOX_TRANSACTIONS, WEBHOOK_BACKLOG, WEBHOOK_BACKLOG_AGE
from app.transactions.models import UNFINISHED, BankTransaction, TransactionStatus
from app.webhooks.models import WebhookEvent

log = logging.getLogger(__name__)


async def sample(sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
    async with sessions() as session:
        by_status = dict(
            (
                await session.execute(
                    select(BankTransaction.status, func.count()).group_by(BankTransaction.status)
                )
            ).all()
        )
        oldest_queued = await session.scalar(
            select(func.min(BankTransaction.accepted_at)).where(BankTransaction.status.in_(UNFINISHED))
        )
        backlog, oldest_event = (
            await session.execute(
                select(func.count(), func.min(WebhookEvent.received_at)).where(
                    WebhookEvent.processed_at.is_(None)
                )
            )
        ).one()
    now = clock.now()
    for status in TransactionStatus:
        OUTBOX_TRANSACTIONS.labels(status.value).set(by_status.get(status.value, 0))
    OUTBOX_OLDEST_QUEUED_AGE.set(_age(oldest_queued, now))
    WEBHOOK_BACKLOG.set(backlog)
    WEBHOOK_BACKLOG_AGE.set(_age(oldest_event, now))


def _age(since: datetime | None, now: datetime) -> float:
    return max(0.0, (now - as_utc(since)).total_seconds()) if since is not None else 0.0


async def sample_forever(sessions: async_sessionmaker[AsyncSession], clock: Clock, interval: float) -> None:
    while True:
        try:
            await sample(sessions, clock)
        except Exception:  # noqa: BLE001 - a database hiccup must not stop the sampling; it is logged
            log.exception("ops.gauges_failed")
        await asyncio.sleep(interval)
