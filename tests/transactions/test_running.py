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
