"""The Codat calls' audit entries reach the business's timeline, the calls connect makes before it records the
company it made included (app/audit/sink.py)."""

from sqlalchemy import select, update

from app.audit import sink as audit_sink
from app.audit.models import AuditEntry
from app.audit.sink import AuditSink
from app.audit.trail import timeline
from app.bankfeed.models import Business
from app.codat.client import CallOutcome


def a_call(operation: str, company: str) -> CallOutcome:
    return CallOutcome(operation=operation, outcome="ok", company_id=company, correlation_id=None)


async def own(app, business: str, company: str) -> None:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker.begin() as session:
        owned = update(Business).where(Business.id == business).values(codat_company_id=company)
        await session.execute(owned)


async def actions_of(app, business: str) -> list[str]:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        return [e.action for e in await timeline(session, business) if e.actor == "codat"]


async def test_a_call_on_a_company_not_yet_recorded_waits_and_reaches_its_business(app, business):
    sink = AuditSink(app.state.sessionmaker, app.state.clock)
    sink.codat_call(a_call("create_connection", "company-made"))

    assert await sink.flush() == 0  # no business owns the company yet: held, not written without one
    await own(app, business, "company-made")  # connect records it after its last call
    assert await sink.flush() == 1

    assert await actions_of(app, business) == ["codat.create_connection"]


async def test_a_call_nobody_comes_to_own_is_written_without_a_business_in_the_end(
    app, business, monkeypatch
):
    sink = AuditSink(app.state.sessionmaker, app.state.clock)
    sink.codat_call(a_call("create_connection", "company-orphan"))
    assert await sink.flush() == 0

    monkeypatch.setattr(audit_sink, "HOLD_SECONDS", 0.0)  # its wait is over
    sink.codat_call(a_call("get_connection", "company-orphan"))
    assert await sink.flush() == 1  # the new call, which no longer waits
    assert await sink.flush(hold=False) == 1  # at shutdown, the held one too

    async with app.state.sessionmaker() as session:
        orphans = (await session.scalars(select(AuditEntry).where(AuditEntry.actor == "codat"))).all()
    assert sorted((e.action, e.business_id) for e in orphans) == [
        ("codat.create_connection", None),
        ("codat.get_connection", None),
    ]
    assert await actions_of(app, business) == []
