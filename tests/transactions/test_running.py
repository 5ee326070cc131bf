"""Where the worker runs: in-process under `dev`, as `bankfeeds-bff worker` elsewhere."""

import asyncio

import pytest

from app import cli
from app.config import Settings
from app.main import create_app


def worker_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "transactions-worker" and not t.done()]


async def test_dev_delivers_in_process_and_stops_with_the_server(database_url):
    settings = Settings(environment="dev", database={"url": database_url}, sandbox={"enabled": True})
    app = create_app(settings)

    async with app.router.lifespan_context(app):
        assert len(worker_tasks()) == 1

    assert worker_tasks() == []


async def test_other_environments_leave_delivery_to_the_worker_command(app):
    assert worker_tasks() == []


def test_the_worker_command_will_not_run_against_the_embedded_sandbox(monkeypatch):
    monkeypatch.setenv("BANKFEEDS_ENVIRONMENT", "dev")
    monkeypatch.setenv("BANKFEEDS_SANDBOX__ENABLED", "true")
    cli.get_settings.cache_clear()

    with pytest.raises(SystemExit, match="in-process"):
        cli.main(["worker"])
    cli.get_settings.cache_clear()


async def test_a_stopped_worker_hands_back_the_streams_it_holds(app):
    from datetime import timedelta

    from app.transactions.models import TransactionStream
    from app.transactions.worker import TransactionWorker

    sessions, now = app.state.sessionmaker, app.state.clock.now()
    async with sessions.begin() as session:  # held by this worker, as when a delivery is cut short
        held = TransactionStream(
            business_id="biz-1",
            account_id="acc-1",
            lease_owner="worker-1",
            lease_until=now + timedelta(seconds=30),
            next_attempt_at=now,
            waits=0,
        )
        session.add(held)
    worker = TransactionWorker(sessions, app.state.codat, app.state.clock, name="worker-1")
    task = asyncio.create_task(worker.run_forever())
    await asyncio.sleep(0.2)

    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    async with sessions() as session:
        stream = await session.get(TransactionStream, held.id)
    assert (stream.lease_owner, stream.lease_until) == (None, None)  # the next worker need not wait 30 s
