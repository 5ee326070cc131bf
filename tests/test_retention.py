"""Retention: old rows go in small batches, by the worker or `bankfeeds-bff prune`; nothing else goes."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, insert, select

from app.clock import SystemClock
from app.config import RetentionSettings
from app.idempotency.models import IdempotencyRecord
from app.metrics import registry
from app.retention import prune
from app.transactions.models import BankTransaction
from app.webhooks.models import WebhookEvent

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


def webhook(id_: str, received_days_ago: float, processed: bool) -> dict[str, object]:
    at = NOW - received_days_ago * DAY
    return {
        "id": id_,
        "event_type": "connection.connected",
        "received_at": at,
        "processed_at": at if processed else None,
        "body": "{}",
    }


def idempotency(key: str, expired_days_ago: float) -> dict[str, object]:
    at = NOW - expired_days_ago * DAY
    return {"caller": "user:biz-1", "key": key, "request_hash": "h", "locked_until": at, "expires_at": at}


def transaction(tid: str, status: str, completed_days_ago: float | None) -> dict[str, object]:
    completed = NOW - completed_days_ago * DAY if completed_days_ago is not None else None
    return {
        "business_id": "biz-1",
        "account_id": "acc-1",
        "transaction_id": tid,
        "cleared_at": datetime(2026, 1, 1),
        "description": "x",
        "amount": Decimal("1.00"),
        "balance": Decimal("1.00"),
        "transaction_type": "Credit",
        "status": status,
        "accepted_at": NOW - 200 * DAY,
        "completed_at": completed,
    }


async def seed(sessions) -> None:  # type: ignore[no-untyped-def]
    async with sessions.begin() as session:
        await session.execute(
            insert(WebhookEvent),
            [webhook(f"old-{i}", 40, True) for i in range(5)]
            + [webhook("old-unapplied", 40, False), webhook("recent", 1, True)],
        )
        await session.execute(
            insert(IdempotencyRecord),
            [idempotency(f"old-{i}", 3) for i in range(5)] + [idempotency("live", -0.5)],
        )
        await session.execute(
            insert(BankTransaction),
            [transaction(f"old-{i}", "delivered", 100) for i in range(5)]
            + [transaction("old-failed", "failed", 100), transaction("recent", "delivered", 10)],
        )


async def remaining(sessions) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return {
            "webhook_event": sorted((await session.scalars(select(WebhookEvent.id))).all()),
            "idempotency_record": sorted((await session.scalars(select(IdempotencyRecord.key))).all()),
            "bank_transaction": sorted((await session.scalars(select(BankTransaction.transaction_id))).all()),
        }


def deleted_total(table: str) -> float:
    return registry().get_sample_value("bff_retention_deleted_rows_total", {"table": table}) or 0.0


async def test_prune_deletes_only_rows_past_their_age_in_batches_and_counts_them(app):
    sessions = app.state.sessionmaker
    await seed(sessions)
    before = deleted_total("webhook_event")

    deleted = await prune(sessions, RetentionSettings(batch_size=2), SystemClock())

    assert deleted == {"webhook_event": 5, "idempotency_record": 5, "bank_transaction": 5}
    assert await remaining(sessions) == {
        "webhook_event": ["old-unapplied", "recent"],  # never an event not applied yet
        "idempotency_record": ["live"],
        "bank_transaction": ["old-failed", "recent"],  # only delivered ones go
    }
    assert deleted_total("webhook_event") - before == 5


async def test_prune_command_for_cron_uses_the_configured_ages(app, settings):
    sessions = app.state.sessionmaker
    await seed(sessions)
    env = {
        **os.environ,
        "BANKFEEDS_ENVIRONMENT": "test",
        "BANKFEEDS_DATABASE__URL": settings.database.url,
        "BANKFEEDS_RETENTION__WEBHOOK_EVENT_DAYS": "0.5",  # the recent event (a day old) goes too
        "BANKFEEDS_RETENTION__BATCH_SIZE": "3",
    }

    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "prune"], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "webhook_event": 6,
        "idempotency_record": 5,
        "bank_transaction": 5,
    }
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == 1
