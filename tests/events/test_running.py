"""Where the events loop runs: in-process under `dev`, inside `bankfeeds-bff worker` elsewhere."""

import asyncio

from app import cli
from app.config import Settings
from app.events import worker as events_worker
from app.main import create_app
from app.transactions import worker as transactions_worker


def events_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "events-worker" and not t.done()]


async def test_dev_runs_the_events_loop_in_process_and_stops_it_with_the_server(database_url):
    app = create_app(Settings(environment="dev", database={"url": database_url}, sandbox={"enabled": True}))

    async with app.router.lifespan_context(app):
        assert len(events_tasks()) == 1

    assert events_tasks() == []


def test_the_worker_command_runs_the_events_loop_beside_the_transactions_worker(monkeypatch, database_url):
    ran: list[str] = []

    async def transactions(settings, config, alongside=None):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.05)  # the events loop is running meanwhile
        ran.append("transactions")

    async def events(settings):  # type: ignore[no-untyped-def]
        ran.append("events started")
        try:
            await asyncio.Event().wait()
        finally:
            ran.append("events stopped")

    monkeypatch.setattr(transactions_worker, "run_standalone", transactions)
    monkeypatch.setattr(events_worker, "run_standalone", events)
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    monkeypatch.setenv("BANKFEEDS_ENVIRONMENT", "test")
    monkeypatch.setenv("BANKFEEDS_DATABASE__URL", database_url)
    monkeypatch.setenv("BANKFEEDS_OPS__WORKER_METRICS_PORT", "0")  # no metrics server to collide on its port
    cli.get_settings.cache_clear()
    try:
        cli.main(["worker"])
    finally:
        cli.get_settings.cache_clear()

    assert ran == ["events started", "transactions", "events stopped"]
