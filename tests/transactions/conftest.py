"""A business whose accounts acc-1 and acc-2 are connected in QuickBooks, a worker to deliver, and helpers."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.transactions.worker import TransactionWorker, WorkerConfig
from tests.factories import connect_in_quickbooks, register

FAST = WorkerConfig(
    concurrency=4, lease_seconds=5, idle_seconds=0.02, retry_base_seconds=0.02, retry_max_seconds=0.2
)
NEW_YORK = ZoneInfo("America/New_York")


def move_clock_to_utc_hour(sandbox: Any, hour: int) -> None:
    """Noon-ish in New York, far from midnight, so that "today" cannot change under a test."""
    now = sandbox.clock.now()
    seconds = ((hour - now.hour) % 24) * 3600 - now.minute * 60 - now.second
    # The next time it is that hour o'clock: within that hour already, that is tomorrow's (the clock only
    # moves forward).
    sandbox.clock.advance(seconds if seconds >= 0 else seconds + 24 * 3600)


def local_today(sandbox: Any, zone: ZoneInfo = NEW_YORK) -> date:
    return sandbox.clock.now().astimezone(zone).date()


def transaction(
    tid: str, day: date | str, amount: str = "10.00", kind: str = "Credit", **fields: Any
) -> dict[str, Any]:
    return {
        "id": tid,
        "date": str(day),
        "description": f"tx {tid}",
        "amount": amount,
        "balance": "100.00",
        "transactionType": kind,
        **fields,
    }


@pytest.fixture
def tx_headers(service_headers) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return service_headers("transactions:write", "transactions:read")


@pytest.fixture
async def connected(client: httpx.AsyncClient, service_headers, user_headers, sandbox) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """biz-1 (US, America/New_York): acc-1 and acc-2 connected in QuickBooks, acc-3 offered but pending."""
    move_clock_to_utc_hour(sandbox, 17)
    await register(client, service_headers(), "biz-1")
    user = user_headers("biz-1")
    connected = (await client.post("/v1/bank-feed/connect", headers=user)).json()
    await connect_in_quickbooks(
        client, connected["linkUrl"], ["acc-1", "acc-2"], feed_start=str(local_today(sandbox))
    )
    view = (await client.post("/v1/bank-feed/refresh", headers=user)).json()
    assert view["connectedCount"] == 2, view
    return {"business": "biz-1", "connection_id": connected["connectionId"], "today": local_today(sandbox)}


def path(account: str = "acc-1", business: str = "biz-1") -> str:
    return f"/internal/v1/businesses/{business}/accounts/{account}/transactions"


async def post(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    transactions: list[dict[str, Any]],
    account: str = "acc-1",
) -> httpx.Response:
    return await client.post(path(account), json={"transactions": transactions}, headers=headers)


async def listing(
    client: httpx.AsyncClient, headers: dict[str, str], account: str = "acc-1", **params: Any
) -> dict[str, Any]:
    response = await client.get(path(account), params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def ledger(sandbox: Any, connection_id: str, account: str = "acc-1") -> list[str]:
    return [t["id"] for t in sandbox.bank_transactions.get((connection_id, account), [])]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.02)


@pytest.fixture
async def worker(app) -> AsyncIterator[Callable[..., asyncio.Task[None]]]:  # type: ignore[no-untyped-def]
    """`worker(**config)`: a worker on the app's database, Codat client (the sandbox) and clock, running until
    the test ends (or cancels the task it is given)."""
    tasks: list[asyncio.Task[None]] = []

    def start(name: str = "test-worker", **config: Any) -> asyncio.Task[None]:
        settings = {**FAST.__dict__, **config}
        instance = TransactionWorker(
            app.state.sessionmaker, app.state.codat, app.state.clock, WorkerConfig(**settings), name=name
        )
        tasks.append(asyncio.create_task(instance.run_forever()))
        return tasks[-1]

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def days(n: int) -> timedelta:
    return timedelta(days=n)
