"""Cleared transactions on Postgres: how many the API accepts per second, and how many the workers deliver.

Everything runs on 127.0.0.1 as it would in production, each in its own process: the sandbox as Codat
(`bankfeeds-bff sandbox`), the BFF (`bankfeeds-bff serve`) and N workers (`bankfeeds-bff worker`), on a fresh
database. Businesses are registered and their accounts connected through the real flow (the BFF, the Link
page, the QuickBooks stand-in). Then:

1. accepted/s: POST every transaction, 1,000 a request, `--post-concurrency` requests at a time, no worker
   running;
2. delivered/s: start the workers; from the first batch cut to the last transaction delivered (process
   start-up is not counted), as the database records it.

Finally the sandbox's ledgers are checked: every transaction once, in order per account.

    python -m bench.transactions [--transactions 100000] [--accounts 20] [--workers 2]
"""

import argparse
import asyncio
import html
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app import migrate
from app.auth.tokens import mint_end_user_token, mint_service_token
from app.config import DEV_SANDBOX_API_KEY, Settings

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
DATABASE = "bench_transactions"
AUTH = Settings(environment="test").auth  # the dev secret the processes use with BANKFEEDS_ENVIRONMENT=test
SERVICE = {
    "Authorization": "Bearer " + mint_service_token(AUTH, "bench", ["businesses:write", "transactions:write"])
}
ACCOUNTS_PER_BUSINESS = 5
PER_REQUEST = 1000
ACCOUNT = {
    "name": "Checking",
    "accountType": "checking",
    "accountNumber": "000123456789",
    "currency": "USD",
    "balance": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dsn(database: str) -> str:
    return (
        make_url(SERVER).set(drivername="postgresql", database=database).render_as_string(hide_password=False)
    )


async def fresh_database() -> str:
    admin = await asyncpg.connect(dsn(make_url(SERVER).database or "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    url = make_url(SERVER).set(database=DATABASE).render_as_string(hide_password=False)
    await asyncio.to_thread(migrate.upgrade, url)  # Alembic runs its own event loop
    return url


@contextmanager
def process(
    args: list[str], env: dict[str, str], ready_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A `bankfeeds-bff` subprocess, stopped (by its id) on the way out."""
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env={**os.environ, **env})
    try:
        if ready_url:
            wait_until_up(ready_url, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def connect_accounts(
    bff: httpx.AsyncClient, sandbox: httpx.AsyncClient, business: str, accounts: list[str]
) -> None:
    """Register the business and its accounts, then what its user does: Connect, the Link page, QuickBooks."""
    put = await bff.put(
        f"/internal/v1/businesses/{business}", json={"name": business, "country": "US"}, headers=SERVICE
    )
    put.raise_for_status()
    for account in accounts:
        (
            await bff.put(
                f"/internal/v1/businesses/{business}/accounts/{account}", json=ACCOUNT, headers=SERVICE
            )
        ).raise_for_status()
    user = {"Authorization": "Bearer " + mint_end_user_token(AUTH, business)}
    link = (await bff.post("/v1/bank-feed/connect", headers=user)).raise_for_status().json()["linkUrl"]
    otp = re.search(r"otp=(\d+)", link).group(1)  # type: ignore[union-attr]
    shown = await sandbox.post(link.split("/start?")[0] + "/credentials", data={"otp": otp, "lang": "en"})
    username, password = (
        html.unescape(re.search(rf'id="credential-{f}">([^<]+)<', shown.text).group(1))
        for f in ("username", "password")
    )  # type: ignore[union-attr]
    today = datetime.now(ZoneInfo("America/New_York")).date().isoformat()
    form = {"username": username, "password": password, "account": accounts, "feedStartDate": today}
    (await sandbox.post("/qbo/connect", data=form)).raise_for_status()
    view = (await bff.post("/v1/bank-feed/refresh", headers=user)).raise_for_status().json()
    assert view["connectedCount"] == len(accounts), view


def transaction_ids(business: str, account: str, per_account: int) -> list[str]:
    return [f"{business}.{account}.{n:06d}" for n in range(per_account)]


async def post_all(
    bff: httpx.AsyncClient, targets: list[tuple[str, str]], per_account: int, concurrency: int
) -> None:
    """Each account's transactions in order, 1,000 a request; `concurrency` requests in flight in all."""
    today = datetime.now(ZoneInfo("America/New_York")).date().isoformat()
    slots = asyncio.Semaphore(concurrency)

    async def one_account(business: str, account: str) -> None:
        ids = transaction_ids(business, account, per_account)
        for start in range(0, per_account, PER_REQUEST):
            body = {
                "transactions": [
                    {
                        "id": tid,
                        "date": today,
                        "description": "Card payment",
                        "amount": "-1.25",
                        "balance": "10.00",
                        "transactionType": "Debit",
                    }
                    for tid in ids[start : start + PER_REQUEST]
                ]
            }
            async with slots:
                response = await bff.post(
                    f"/internal/v1/businesses/{business}/accounts/{account}/transactions",
                    json=body,
                    headers=SERVICE,
                )
            assert response.status_code == 202, response.text

    await asyncio.gather(*(one_account(b, a) for b, a in targets))


async def delivery_window(database_dsn: str, total: int, timeout: float) -> float:
    """Seconds from the first batch cut to the last transaction delivered, once all `total` are."""
    connection = await asyncpg.connect(database_dsn)
    try:
        deadline = time.monotonic() + timeout
        while (
            delivered := await connection.fetchval(
                "SELECT count(*) FROM bank_transaction WHERE status = 'delivered'"
            )
        ) < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {delivered} of {total} delivered after {timeout} s")
            await asyncio.sleep(0.25)
        first, last = await connection.fetchrow(
            "SELECT (SELECT min(created_at) FROM transaction_batch),"
            " (SELECT max(completed_at) FROM bank_transaction)"
        )
        return (last - first).total_seconds()
    finally:
        await connection.close()


async def verify_ledgers(
    sandbox: httpx.AsyncClient, connections: dict[str, str], targets: list[tuple[str, str]], per_account: int
) -> None:
    for business, account in targets:
        recorded = (
            await sandbox.get(
                f"/_sandbox/connections/{connections[business]}/accounts/{account}/bankTransactions"
            )
        ).json()
        assert [t["id"] for t in recorded] == transaction_ids(business, account, per_account), (
            f"{business}/{account}"
        )


async def current_connections(database_dsn: str) -> dict[str, str]:
    connection = await asyncpg.connect(database_dsn)
    try:
        rows = await connection.fetch(
            "SELECT business_id, codat_connection_id FROM feed_connection WHERE is_current"
        )
        return {row["business_id"]: row["codat_connection_id"] for row in rows}
    finally:
        await connection.close()


async def run(args: argparse.Namespace) -> None:
    url = await fresh_database()
    accounts = max(1, args.accounts)
    per_account = args.transactions // accounts
    total = per_account * accounts
    businesses = [
        f"bench-{b}" for b in range((accounts + ACCOUNTS_PER_BUSINESS - 1) // ACCOUNTS_PER_BUSINESS)
    ]
    targets = [
        (businesses[n // ACCOUNTS_PER_BUSINESS], f"acc-{n % ACCOUNTS_PER_BUSINESS}") for n in range(accounts)
    ]
    sandbox_port, bff_port = free_port(), free_port()
    sandbox_url, bff_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{bff_port}"
    env = {
        "BANKFEEDS_ENVIRONMENT": "test",
        "BANKFEEDS_LOG_LEVEL": "WARNING",
        "BANKFEEDS_DATABASE__URL": url,
        "BANKFEEDS_CODAT__BASE_URL": sandbox_url,
        "BANKFEEDS_CODAT__API_KEY": DEV_SANDBOX_API_KEY,
        "BANKFEEDS_WEBHOOKS__RECONCILE_INTERVAL_SECONDS": "0",
    }
    where = f"{accounts} accounts of {len(businesses)} businesses, Postgres {make_url(url).host}"
    print(f"{total:,} transactions, {where}")
    with (
        process(["sandbox", "--port", str(sandbox_port)], env, f"{sandbox_url}/_sandbox/clock"),
        process(["serve", "--port", str(bff_port)], env, f"{bff_url}/healthz"),
    ):
        async with (
            httpx.AsyncClient(base_url=bff_url, timeout=120) as bff,
            httpx.AsyncClient(base_url=sandbox_url, timeout=60) as sandbox,
        ):
            for business in businesses:
                mine = [a for b, a in targets if b == business]
                await connect_accounts(bff, sandbox, business, mine)
            # Webhooks only now: onboarding's refresh and a sourceAccount webhook can deadlock (reported).
            (
                await sandbox.put("/_sandbox/portal", json={"webhook": {"url": f"{bff_url}/webhooks/codat"}})
            ).raise_for_status()

            started = time.perf_counter()
            await post_all(bff, targets, per_account, args.post_concurrency)
            accepting = time.perf_counter() - started
            print(
                f"accepted:  {total / accepting:10,.0f} transactions/s  ({total:,} in {accepting:.2f} s, "
                f"{args.post_concurrency} requests of {PER_REQUEST:,} in flight)"
            )

            with ExitStack() as workers:
                for _ in range(args.workers):
                    workers.enter_context(process(["worker", "--concurrency", str(args.concurrency)], env))
                delivering = await delivery_window(dsn(DATABASE), total, timeout=600)
            print(
                f"delivered: {total / delivering:10,.0f} transactions/s  ({total:,} in {delivering:.2f} s, "
                f"{args.workers} workers x {args.concurrency} accounts, pushes of {PER_REQUEST:,})"
            )

            await verify_ledgers(sandbox, await current_connections(dsn(DATABASE)), targets, per_account)
            print("verified:  each account's ledger at the sandbox holds its transactions once, in order")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="accounts each worker delivers at once")
    parser.add_argument("--post-concurrency", type=int, default=8, help="POST requests in flight")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
