"""Retention: applied webhook events, expired idempotency records and delivered transactions, once older
than `retention.*`, are deleted in small batches (one short transaction each), so that the tables stop
growing without a long lock or a long transaction holding back the service.

Run by the transactions worker every `retention.interval_seconds`, or by `bankfeeds-bff prune` (cron).
Several runs at once are harmless: each batch deletes what is still there.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from app.clock import Clock
from app.config import RetentionSettings
from app.idempotency.models import IdempotencyRecord
from app.metrics import RETENTION_DELETED, RETENTION_LAST_RUN
from app.transactions.models import BankTransaction, TransactionStatus
from app.webhooks.models import WebhookEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    table: str
    key: tuple[InstrumentedAttribute[object], ...]  # the primary key, to delete a batch by
    old: ColumnElement[bool]  # which rows may go


def rules(settings: RetentionSettings, now: datetime) -> list[Rule]:
    def before(days: float) -> datetime:
        return now - timedelta(days=days)

    return [
        Rule(
            "webhook_event",
            (WebhookEvent.id,),
            WebhookEvent.processed_at < before(settings.webhook_event_days),  # never one not applied yet
        ),
        Rule(
            "idempotency_record",
            (IdempotencyRecord.caller, IdempotencyRecord.key),
            IdempotencyRecord.expires_at < before(settings.idempotency_record_days),
        ),
        Rule(
            "bank_transaction",
            (BankTransaction.seq,),
            (BankTransaction.status == TransactionStatus.DELIVERED)
            & (BankTransaction.completed_at < before(settings.delivered_transaction_days))
            # Implied (accepted before completed), and indexed; status and completed_at change, so are not.
            & (BankTransaction.accepted_at < before(settings.delivered_transaction_days)),
        ),
    ]


async def prune(
    sessions: async_sessionmaker[AsyncSession], settings: RetentionSettings, clock: Clock
) -> dict[str, int]:
    """Delete every row past its age, a batch at a time; how many went, by table."""
    deleted: dict[str, int] = {}
    for rule in rules(settings, clock.now()):
        deleted[rule.table] = 0
        while count := await _delete_batch(sessions, rule, settings.batch_size):
            deleted[rule.table] += count
            RETENTION_DELETED.labels(rule.table).inc(count)
            await asyncio.sleep(0)  # let requests sharing this process's loop in between batches
    RETENTION_LAST_RUN.set(time.time())
    log.info("retention.pruned", extra={"deleted": deleted})
    return deleted


async def _delete_batch(sessions: async_sessionmaker[AsyncSession], rule: Rule, size: int) -> int:
    batch = select(*rule.key).where(rule.old).limit(size)
    async with sessions.begin() as session:
        result = await session.execute(
            delete(rule.key[0].class_)
            .where(tuple_(*rule.key).in_(batch))
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune_forever(
    sessions: async_sessionmaker[AsyncSession], settings: RetentionSettings, clock: Clock
) -> None:
    while True:
        try:
            await prune(sessions, settings, clock)
        except Exception:  # noqa: BLE001 - the next run tries again; it is logged
            log.exception("retention.failed")
        await asyncio.sleep(settings.interval_seconds)
