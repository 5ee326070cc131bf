"""The gauges an operator alerts on, read from the database: the outbox by status, the oldest queued, the
webhook backlog."""

from datetime import timedelta

from sqlalchemy import insert

from app.backlog import sample
from app.clock import SystemClock
from app.metrics import registry
from app.transactions.models import BankTransaction
from app.webhooks.models import WebhookEvent
from tests.test_retention import NOW, transaction, webhook


def gauge(name: str, **labels: str) -> float | None:
    return registry().get_sample_value(name, labels)


async def test_outbox_and_webhook_backlog_gauges_come_from_the_tables(app):
    sessions = app.state.sessionmaker
    oldest = {**transaction("q-1", "queued", None), "accepted_at": NOW - timedelta(minutes=10)}
    newer = {**transaction("q-2", "queued", None), "accepted_at": NOW - timedelta(minutes=1)}
    async with sessions.begin() as session:
        await session.execute(
            insert(BankTransaction),
            [oldest, newer, transaction("d-1", "delivered", 1)],
        )
        await session.execute(
            insert(WebhookEvent), [webhook("stuck", 1 / 24, False), webhook("done", 1, True)]
        )

    await sample(sessions, SystemClock())

    assert gauge("bff_outbox_transactions", status="queued") == 2
    assert gauge("bff_outbox_transactions", status="delivered") == 1
    assert gauge("bff_outbox_transactions", status="failed") == 0
    assert 600 <= gauge("bff_outbox_oldest_queued_age_seconds") < 7200  # type: ignore[operator]
    assert gauge("bff_webhook_backlog_events") == 1
    assert 3600 <= gauge("bff_webhook_backlog_age_seconds") < 7200  # type: ignore[operator]
