"""The audit trail is kept for audit.retention_days, then deleted by the events loop."""

from datetime import timedelta

from sqlalchemy import select

from app.audit.models import AuditEntry
from app.audit.trail import SYSTEM, Audit, record


async def test_entries_older_than_the_retention_are_deleted(app, events, sandbox):
    now = sandbox.clock.now()
    retention = timedelta(days=app.state.settings.audit.retention_days)
    async with app.state.sessionmaker.begin() as session:
        record(session, Audit("biz-1", SYSTEM, "old", "ok", "too old"), now - retention - timedelta(days=1))
        record(session, Audit("biz-1", SYSTEM, "kept", "ok", "within"), now - retention + timedelta(days=1))

    await events.run_once()

    async with app.state.sessionmaker() as session:
        assert (await session.scalars(select(AuditEntry.action))).all() == ["kept"]
