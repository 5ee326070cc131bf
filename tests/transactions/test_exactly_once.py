"""100,000 transactions across 20 accounts, faults injected at Codat, and one of two workers killed just after
Codat took a push and before the worker could record it: every transaction reaches QuickBooks (the sandbox's
ledger) exactly once, in order per account, and none is lost."""

import asyncio
from typing import Any

import httpx
import pytest

from app.codat.client import CodatClient, build_http_client
from app.db import create_engine, create_sessionmaker
from app.transactions.worker import TransactionWorker, WorkerConfig
from tests.factories import ACCOUNTS, connect_in_quickbooks, register
from tests.transactions.conftest import days, local_today, move_clock_to_utc_hour

BUSINESSES = 5
ACCOUNTS_PER_BUSINESS = 4
PER_ACCOUNT = 5_000
PER_REQUEST = 1_000
FAULTS = {
    "operations": ["create-bank-transactions", "get-create-operation"],
    "errorRate": 0.1,
    "rateLimitRate": 0.1,
    "timeoutRate": 0.1,
    "timeoutSeconds": 0,
    "retryAfterSeconds": 0,
}
WORKER = WorkerConfig(
    concurrency=6, lease_seconds=1.0, idle_seconds=0.05, retry_base_seconds=0.01, retry_max_seconds=0.1
)


class KillAfterPush(httpx.AsyncBaseTransport):
    """A worker's way to Codat that kills the worker once Codat has taken its `kill_at`-th push, before the
    answer reaches it: the case its successor must finish without writing anything twice."""

    def __init__(self, inner: httpx.AsyncBaseTransport, kill_at: int | None = None) -> None:
        self.inner = inner
        self.kill_at = kill_at
        self.victim: asyncio.Task[None] | None = None
        self.pushes: list[str] = []  # idempotency keys of the pushes Codat answered
        self.killed_key: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and response.status_code == 200:
            self.pushes.append(request.headers["Idempotency-Key"])
            if len(self.pushes) == self.kill_at and self.victim is not None:
                self.killed_key = self.pushes[-1]
                self.victim.cancel()
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await asyncio.sleep(0)  # the worker dies here, the push taken, its answer never recorded
        return response


async def connect_businesses(
    client: httpx.AsyncClient, service_headers: Any, user_headers: Any, today: Any
) -> list[tuple[str, str]]:
    accounts = {f"acc-{n}": ACCOUNTS["acc-1"] for n in range(ACCOUNTS_PER_BUSINESS)}
    targets = []
    for b in range(BUSINESSES):
        business = f"biz-{b}"
        await register(client, service_headers(), business, accounts=accounts)
        link = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
        await connect_in_quickbooks(client, link["linkUrl"], list(accounts), feed_start=str(today))
        assert (await client.post("/v1/bank-feed/refresh", headers=user_headers(business))).json()[
            "connectedCount"
        ] == len(accounts)
        targets += [(business, account) for account in accounts]
    return targets


def expected_ids(business: str, account: str) -> list[str]:
    return [f"{business}.{account}.{n:05d}" for n in range(PER_ACCOUNT)]


async def send_all(
    client: httpx.AsyncClient, headers: dict[str, str], business: str, account: str, today: Any
) -> None:
    """Five requests of 1,000, earliest first: two of yesterday's transactions, then three of today's."""
    ids = expected_ids(business, account)
    for start in range(0, PER_ACCOUNT, PER_REQUEST):
        day = today - days(1) if start < 2 * PER_REQUEST else today
        body = {
            "transactions": [
                {
                    "id": tid,
                    "date": str(day),
                    "description": "card payment",
                    "amount": "-1.25",
                    "balance": "10.00",
                    "transactionType": "Debit",
                }
                for tid in ids[start : start + PER_REQUEST]
            ]
        }
        response = await client.post(
            f"/internal/v1/businesses/{business}/accounts/{account}/transactions", json=body, headers=headers
        )
        assert response.status_code == 202, response.text


def worker_on(
    app: Any, settings: Any, sandbox_app: Any, name: str, transport: KillAfterPush
) -> tuple[TransactionWorker, Any]:
    """A worker as a separate process would have it: its own engine, Codat client and circuit breaker."""
    engine = create_engine(settings)
    codat_settings = settings.codat.model_copy(
        update={
            "base_url": "http://codat-sandbox",
            "api_key": settings.sandbox.api_key,
            "circuit_breaker_threshold": 1_000,
        }
    )
    http = build_http_client(codat_settings, transport=transport)
    worker = TransactionWorker(
        create_sessionmaker(engine), CodatClient(http, codat_settings), app.state.clock, WORKER, name=name
    )
    return worker, (engine, http)


@pytest.mark.slow
async def test_every_transaction_reaches_quickbooks_once_in_order_despite_faults_and_a_killed_worker(
    app, client, settings, sandbox_app, sandbox, service_headers, user_headers
):
    move_clock_to_utc_hour(sandbox, 17)
    today = local_today(sandbox)
    targets = await connect_businesses(client, service_headers, user_headers, today)
    sandbox.set_knobs(FAULTS)
    a_way, b_way = (
        KillAfterPush(httpx.ASGITransport(app=sandbox_app), kill_at=3),
        KillAfterPush(httpx.ASGITransport(app=sandbox_app)),
    )
    worker_a, a_resources = worker_on(app, settings, sandbox_app, "worker-a", a_way)
    worker_b, b_resources = worker_on(app, settings, sandbox_app, "worker-b", b_way)
    a_way.victim = asyncio.create_task(worker_a.run_forever())
    b_task = asyncio.create_task(worker_b.run_forever())
    headers = service_headers("transactions:write")
    try:
        await asyncio.gather(
            *(send_all(client, headers, business, account, today) for business, account in targets)
        )
        await wait_until_delivered(app, len(targets) * PER_ACCOUNT)
    finally:
        b_task.cancel()
        a_way.victim.cancel()
        await asyncio.gather(b_task, a_way.victim, return_exceptions=True)
        for engine, http in (a_resources, b_resources):
            await http.aclose()
            await engine.dispose()

    for business, account in targets:
        connection_id = await current_connection_id(app, business)
        recorded = [t["id"] for t in sandbox.bank_transactions[(connection_id, account)]]
        assert recorded == expected_ids(business, account), (
            f"{business}/{account}: not exactly once, in order"
        )
    assert (
        sum(len(ledger) for ledger in sandbox.bank_transactions.values())
        == BUSINESSES * ACCOUNTS_PER_BUSINESS * PER_ACCOUNT
    )
    assert a_way.victim.cancelled()
    assert a_way.killed_key is not None
    assert a_way.killed_key in b_way.pushes, (
        "the killed worker's push was finished by the other, under its key"
    )


async def wait_until_delivered(app: Any, total: int, timeout: float = 120) -> None:
    from sqlalchemy import func, select

    from app.transactions.models import BankTransaction

    async def delivered() -> int:
        async with app.state.sessionmaker() as session:
            return await session.scalar(select(func.count()).where(BankTransaction.status == "delivered"))  # type: ignore[no-any-return]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (count := await delivered()) < total:
        assert loop.time() < deadline, f"only {count} of {total} delivered"
        await asyncio.sleep(0.2)


async def current_connection_id(app: Any, business: str) -> str:
    from app.bankfeed.repository import BankFeedRepository

    async with app.state.sessionmaker() as session:
        connection = await BankFeedRepository(session).current_connection(business)
        assert connection is not None
        assert connection.codat_connection_id is not None
        return connection.codat_connection_id
