"""Every Codat webhook in is in the audit trail: applied ones on their business's timeline, rejected and dead
ones without a business (the operator finds them in the webhook list)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.audit.trail import timeline
from app.errors import InvalidInput
from app.webhooks import service as webhooks_service
from app.webhooks.router import webhook_processor
from tests.webhooks.test_failure_paths import event


async def entries(app, **where: object) -> list[tuple[str | None, str, str, str, str]]:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(select(AuditEntry).filter_by(**where).order_by(AuditEntry.id))
        return [(e.business_id, e.actor, e.action, e.outcome, e.detail) for e in rows]


async def test_an_applied_webhook_is_on_its_business_timeline(app, client, user_headers, business):
    connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
    unlinked = event(
        "connection.disconnected", {"connection": {"id": connected["connectionId"], "status": "Unlinked"}}
    )

    await webhook_processor(app.state).receive("wh-unlinked", unlinked, datetime.now(UTC))

    async with app.state.sessionmaker() as session:
        shown = [(e.actor, e.action, e.outcome, e.detail) for e in await timeline(session, business)]
    assert ("codat", "webhook.received", "applied", "connection.disconnected (wh-unlinked)") in shown


async def test_rejected_and_dead_webhooks_are_audited_too(app, settings, sandbox, monkeypatch):
    processor = webhook_processor(app.state)
    with pytest.raises(InvalidInput):
        await processor.receive(
            "wh-hacked",
            event("connection.connected", {"connection": {"id": "c-1", "status": "Hacked"}}),
            datetime.now(UTC),
        )

    async def failing(repo, body, at):  # type: ignore[no-untyped-def]
        raise RuntimeError("cannot apply")

    monkeypatch.setattr(webhooks_service, "apply", failing)
    poison = event("connection.connected", {"connection": {"id": "c-2", "status": "Linked"}})
    await processor.receive("wh-poison", poison, datetime.now(UTC))
    for _ in range(settings.webhooks.apply_attempts - 1):
        sandbox.clock.advance(24 * 3600)  # past any backoff
        await processor.process("wh-poison")

    assert await entries(app, actor="codat") == [
        (None, "codat", "webhook.received", "rejected", "connection.connected (wh-hacked)"),
        (None, "codat", "webhook.received", "dead", "connection.connected (wh-poison)"),
    ]
