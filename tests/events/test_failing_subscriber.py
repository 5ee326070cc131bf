"""A subscriber that keeps failing: each delivery is retried for a bounded time, then parked; the
subscription is disabled and the operator told (metric, error log, audit); enabled again, it resumes."""

import logging
from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.events.models import DeliveryStatus, EventDelivery
from tests.events.conftest import subscribe
from tests.factories import register


def disabled_count() -> float:
    return REGISTRY.get_sample_value("bff_event_subscriptions_disabled_total") or 0.0


async def deliveries(app) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(EventDelivery.status, EventDelivery.attempts).order_by(EventDelivery.id)
        )
        return [(status, attempts) for status, attempts in rows.all()]


async def test_a_dead_endpoint_is_parked_then_disabled_and_resumes_when_enabled(
    app, client, service_headers, events, receiver, sandbox, caplog
):
    events.settings.events.retry_for_seconds = 60
    events.settings.events.disable_after_seconds = 240
    events.deliverer.settings = events.settings.events
    admin = service_headers("events:admin")
    subscription = await subscribe(client, admin, receiver.url, ["feed.needs_action"])
    receiver.secret = subscription["secret"]
    await receiver.stop()
    before = disabled_count()

    await register(client, service_headers(), "biz-1")
    for _ in range(40):  # 200 s: past the retry window (60 s), not yet past disable_after (240 s)
        await events.run_once()
        sandbox.clock.advance(5)
    [(status, attempts)] = await deliveries(app)
    assert status == DeliveryStatus.FAILED  # parked after a minute of tries
    assert 3 <= attempts < 40  # backed off between them
    assert disabled_count() == before

    await register(client, service_headers(), "biz-2")  # a parked delivery does not block the next
    with caplog.at_level(logging.ERROR, logger="app.events.delivery"):
        for _ in range(40):
            await events.run_once()
            sandbox.clock.advance(10)
    listed = (await client.get("/internal/v1/event-subscriptions", headers=admin)).json()
    assert listed[0]["enabled"] is False
    assert listed[0]["disabledReason"].startswith("no successful delivery since")
    assert disabled_count() == before + 1
    assert "events.subscription_disabled" in caplog.messages
    async with app.state.sessionmaker() as session:
        audit = (
            await session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("subscription.%")))
        ).all()
    assert audit == ["subscription.created", "subscription.disabled"]
    waiting = await deliveries(app)
    assert waiting[1][0] == DeliveryStatus.PENDING  # disabled: it waits, untouched

    await receiver.start()
    enabled = await client.post(
        f"/internal/v1/event-subscriptions/{subscription['id']}/enable", headers=admin
    )
    assert enabled.json()["enabled"] is True
    sandbox.clock.advance(timedelta(hours=2).total_seconds())
    await events.run_once()
    assert [e["data"]["businessId"] for e in receiver.accepted] == ["biz-2"]
    resent = await client.post(
        f"/internal/v1/event-subscriptions/{subscription['id']}/replay",
        json={"since": "2000-01-01T00:00:00Z"},
        headers=admin,
    )
    assert resent.json() == {"queued": 2}
    await events.run_once()
    await events.run_once()
    assert [e["data"]["businessId"] for e in receiver.accepted] == ["biz-2", "biz-1", "biz-2"]
