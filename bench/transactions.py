"""Cleared transactions on Postgres: how many the API accepts per second against what Postgres itself takes,
how many the workers deliver, and what delivering does to the table's size; for two account shapes.

Everything runs on 127.0.0.1 as it would in production, each in its own process: the sandbox as Codat
(`bankfeeds-bff sandbox`), the BFF (`bankfeeds-bff serve`) and N workers (`bankfeeds-bff worker`), on a fresh
database per shape. Businesses are registered and their accounts connected through the real flow (the BFF,
the Link page, the QuickBooks stand-in). Then, per shape (default 1,000 accounts of 100 transactions and 20
of 10,000):

1. accepted/s: POST every transaction, up to 1,000 a request, `--post-concurrency` requests at a time, no
   worker running;
2. the floor, in the same run and database: the same rows, in the same requests' chunks and concurrency,
   into a scratch copy of `bank_transaction` (same indexes and storage), by COPY and by one multi-row INSERT
   a chunk, each chunk its own transaction;
3. delivered/s: start the workers; from the first batch cut to the last transaction delivered (process
   start-up is not counted), as the database records it;
4. `bank_transaction`'s size (heap, and with its indexes) after accepting and after delivery, and how many
   of its updates were HOT (no new index entries, the old version pruned from its page);
5. the CPU each kind of process (workers, BFF, sandbox, Postgres's backends) spent on delivery, per 1,000
   transactions: steadier than delivered/s when others share the machine.

Finally the sandbox's ledgers are checked: every transaction once, in order per account.

    python -m bench.transactions [--shapes 1000x100,20x10000] [--workers 2]
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
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app import migrate
from app.auth.tokens import mint_end_user_token, mint_service_token
from app.config import DEV_SANDBOX_API_KEY, Settings
from bench import harness

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
DATABASE = "bench_transactions"
AUTH = Settings(environment="test").auth  # the dev secret the processes use with BANKFEEDS_ENVIRONMENT=test
SERVICE = {
    "Authorization": "Bearer " + mint_service_token(AUTH, "bench", ["businesses:write", "transactions:write"])
}
ACCOUNTS_PER_BUSINESS = 5
PER_REQUEST = 1000
DESCRIPTION, AMOUNT, BALANCE, TYPE = "Card payment", "-1.25", "10.00", "Debit"
COLUMNS = [
    "business_id",
    "account_id",
    "transaction_id",
    "cleared_at",
    "description",
    "amount",
    "balance",
    "transaction_type",
    "status",
    "accepted_at",
]
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
        for start in range(0, per_account, PER_REQUEST):  # in order: the rules take none older
            body = {
                "transactions": [
                    {
                        "id": tid,
                        "date": today,
                        "description": DESCRIPTION,
                        "amount": AMOUNT,
                        "balance": BALANCE,
                        "transactionType": TYPE,
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


async def delivery_window(
    database_dsn: str, total: int, timeout: float, processes: dict[str, list[subprocess.Popen[bytes]]]
) -> tuple[float, dict[str, float], float]:
    """Seconds from the first batch cut to the last transaction delivered, once all `total` are; the CPU
    seconds each kind of process spent meanwhile (from when the first batch shows, so that the workers'
    start-up is left out), Postgres's backends of the database included; and how busy the machine was (all of
    its processes: below 100% the workers waited on something other than the CPU)."""
    connection = await asyncpg.connect(database_dsn)
    try:
        deadline = time.monotonic() + timeout
        while not await connection.fetchval("SELECT EXISTS (SELECT FROM transaction_batch)"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no batch cut after {timeout} s")
            await asyncio.sleep(0.05)
        cpu = CpuMeter(processes)
        await cpu.sample(connection)
        ticks = harness.machine_ticks()
        while (
            delivered := await connection.fetchval(
                "SELECT count(*) FROM bank_transaction WHERE status = 'delivered'"
            )
        ) < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {delivered} of {total} delivered after {timeout} s")
            await asyncio.sleep(0.25)
            await cpu.sample(connection)
        busy, _ = harness.machine_use(ticks, harness.machine_ticks())
        first, last = await connection.fetchrow(
            "SELECT (SELECT min(created_at) FROM transaction_batch),"
            " (SELECT max(completed_at) FROM bank_transaction)"
        )
        return (last - first).total_seconds(), cpu.spent(), busy
    finally:
        await connection.close()


class CpuMeter:
    """User+system CPU seconds spent since the first sample by each kind of process, and by Postgres's
    backends of the database: sampled often, since a backend takes its seconds with it when it exits."""

    def __init__(self, processes: dict[str, list[subprocess.Popen[bytes]]]) -> None:
        self.processes = processes
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.backends_first: dict[int, float] = {}
        self.backends_last: dict[int, float] = {}

    async def sample(self, connection: asyncpg.Connection) -> None:
        import psutil

        for kind, procs in self.processes.items():
            self.last[kind] = sum(harness.cpu_seconds(p) for p in procs)
            self.first.setdefault(kind, self.last[kind])
        started = bool(self.backends_first) or bool(self.backends_last)
        query = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        for row in await connection.fetch(query):
            try:
                seconds = sum(psutil.Process(row["pid"]).cpu_times()[:2])
            except psutil.NoSuchProcess:
                continue
            self.backends_last[row["pid"]] = seconds
            # A backend first seen later started within the window: all of its seconds count.
            self.backends_first.setdefault(row["pid"], 0.0 if started else seconds)

    def spent(self) -> dict[str, float]:
        spent = {kind: self.last[kind] - self.first[kind] for kind in self.processes}
        spent["postgres"] = sum(s - self.backends_first[pid] for pid, s in self.backends_last.items())
        return spent


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


async def table_size(database_dsn: str) -> tuple[int, int, int, int]:
    """bank_transaction's heap bytes, bytes with its indexes, updates and HOT updates so far."""
    await asyncio.sleep(1.5)  # the workers' backends report their statistics at most once a second
    connection = await asyncpg.connect(database_dsn)
    try:
        row = await connection.fetchrow(
            "SELECT pg_relation_size('bank_transaction'), pg_total_relation_size('bank_transaction'),"
            " n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'bank_transaction'"
        )
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])
    finally:
        await connection.close()


async def floor(
    database_dsn: str, targets: list[tuple[str, str]], per_account: int, concurrency: int
) -> dict[str, float]:
    """Rows/s Postgres takes by COPY and by multi-row INSERT: the same rows, chunks and concurrency as the
    POSTs, into a scratch copy of bank_transaction (its indexes and storage), a transaction a chunk."""
    today = datetime.now(ZoneInfo("America/New_York")).replace(hour=0, minute=0, second=0, microsecond=0)
    now = datetime.now(ZoneInfo("UTC"))
    chunks = [
        [
            (
                b,
                a,
                tid,
                today.replace(tzinfo=None),
                DESCRIPTION,
                Decimal(AMOUNT),
                Decimal(BALANCE),
                TYPE,
                "queued",
                now,
            )
            for tid in ids[start : start + PER_REQUEST]
        ]
        for b, a in targets
        for ids in [transaction_ids(b, a, per_account)]
        for start in range(0, per_account, PER_REQUEST)
    ]
    pool = await asyncpg.create_pool(database_dsn, min_size=concurrency, max_size=concurrency)
    names = ", ".join(COLUMNS)
    try:
        options = await pool.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'bank_transaction'")
        storage = f" WITH ({', '.join(options)})" if options else ""
        await pool.execute(
            "DROP TABLE IF EXISTS floor_rows;"
            f" CREATE TABLE floor_rows (LIKE bank_transaction INCLUDING ALL){storage}"
        )

        async def copy(connection: asyncpg.Connection, chunk: list[tuple[object, ...]]) -> None:
            await connection.copy_records_to_table("floor_rows", records=chunk, columns=COLUMNS)

        async def insert(connection: asyncpg.Connection, chunk: list[tuple[object, ...]]) -> None:
            width = len(COLUMNS)
            values = ", ".join(
                "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                for r in range(len(chunk))
            )
            await connection.execute(f"INSERT INTO floor_rows ({names}) VALUES {values}", *sum(chunk, ()))

        rates = {}
        for name, load in (("COPY", copy), ("multi-row INSERT", insert)):
            await pool.execute("TRUNCATE floor_rows")
            slots = asyncio.Semaphore(concurrency)

            async def one(chunk: list[tuple[object, ...]], load=load, slots=slots) -> None:
                async with slots, pool.acquire() as connection, connection.transaction():
                    await load(connection, chunk)

            started = time.perf_counter()
            await asyncio.gather(*(one(chunk) for chunk in chunks))
            rates[name] = sum(map(len, chunks)) / (time.perf_counter() - started)
        await pool.execute("DROP TABLE floor_rows")
        return rates
    finally:
        await pool.close()


async def run_shape(args: argparse.Namespace, accounts: int, per_account: int) -> dict[str, object]:
    url = await fresh_database()
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
        "BANKFEEDS_OPS__WORKER_METRICS_PORT": "0",  # several workers: no metrics port to share
        "BANKFEEDS_LIMITS__PER_SERVICE": "1000000/minute",  # one service posts every account's requests
    }
    shape = f"{accounts:,} accounts x {per_account:,}"
    print(f"{shape}: {total:,} transactions, {len(businesses)} businesses", file=sys.stderr, flush=True)
    with (
        process(["sandbox", "--port", str(sandbox_port)], env, f"{sandbox_url}/_sandbox/clock") as codat,
        process(["serve", "--port", str(bff_port)], env, f"{bff_url}/healthz") as served,
    ):
        async with (
            httpx.AsyncClient(base_url=bff_url, timeout=120) as bff,
            httpx.AsyncClient(base_url=sandbox_url, timeout=60) as sandbox,
        ):
            slots = asyncio.Semaphore(8)

            async def onboard(business: str) -> None:
                async with slots:
                    await connect_accounts(bff, sandbox, business, [a for b, a in targets if b == business])

            await asyncio.gather(*(onboard(business) for business in businesses))
            # What the events loop (in every `bankfeeds-bff worker`), running all along in a deployment, did
            # as the businesses were onboarded: their views projected into events. Done before the workers
            # start, so that delivery's CPU leaves it out (the first projection of 200 businesses cost the
            # workers about a sixth of their CPU in the 1,000 x 100 shape).
            await harness.project_events(url)
            # Webhooks only now: onboarding's refresh and a sourceAccount webhook can deadlock (reported).
            (
                await sandbox.put("/_sandbox/portal", json={"webhook": {"url": f"{bff_url}/webhooks/codat"}})
            ).raise_for_status()

            ticks = harness.machine_ticks()
            started = time.perf_counter()
            await post_all(bff, targets, per_account, args.post_concurrency)
            accepting = time.perf_counter() - started
            accept_busy, _ = harness.machine_use(ticks, harness.machine_ticks())
            accepted_size = await table_size(dsn(DATABASE))
            floors = await floor(dsn(DATABASE), targets, per_account, args.post_concurrency)

            with ExitStack() as stack:
                workers = [
                    stack.enter_context(process(["worker", "--concurrency", str(args.concurrency)], env))
                    for _ in range(args.workers)
                ]
                processes = {"workers": workers, "BFF": [served], "sandbox": [codat]}
                delivering, cpu, deliver_busy = await delivery_window(
                    dsn(DATABASE), total, args.timeout, processes
                )
            delivered_size = await table_size(dsn(DATABASE))
            await verify_ledgers(sandbox, await current_connections(dsn(DATABASE)), targets, per_account)
    accepted_rate = total / accepting
    return {
        "shape": shape,
        "request": f"{min(per_account, PER_REQUEST):,} rows",
        "accepted/s": accepted_rate,
        "COPY floor/s": floors["COPY"],
        "INSERT floor/s": floors["multi-row INSERT"],
        "accepted / INSERT floor": accepted_rate / floors["multi-row INSERT"],
        "accepted / COPY floor": accepted_rate / floors["COPY"],
        "machine busy (accepting)": f"{accept_busy:.0%}",
        "delivered/s": total / delivering,
        "machine busy (delivering)": f"{deliver_busy:.0%}",
        "CPU ms per 1,000 delivered": {kind: seconds * 1e6 / total for kind, seconds in cpu.items()},
        "size accepted": accepted_size,
        "size delivered": delivered_size,
    }


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


async def run(args: argparse.Namespace) -> None:
    harness.header("Transactions: accepted/s against the Postgres floor, delivered/s, table size (issue 18)")
    print(
        f"{args.workers} workers x {args.concurrency} accounts, {args.post_concurrency} POSTs in flight; "
        f"Postgres {make_url(SERVER).host}; load average before: {os.getloadavg()[0]:.2f}\n"
    )
    results = []
    for spec in args.shapes.split(","):
        accounts, per_account = (int(n) for n in spec.lower().split("x"))
        results.append(await run_shape(args, accounts, per_account))
        print(results[-1], file=sys.stderr, flush=True)  # kept should a later shape fail
    print(
        harness.table(
            [
                "shape",
                "request",
                "accepted/s",
                "COPY floor/s",
                "INSERT floor/s",
                "accepted / INSERT",
                "accepted / COPY",
                "machine busy",
            ],
            [
                [
                    r["shape"],
                    r["request"],
                    r["accepted/s"],
                    r["COPY floor/s"],
                    r["INSERT floor/s"],
                    f"{r['accepted / INSERT floor']:.0%}",
                    f"{r['accepted / COPY floor']:.0%}",
                    r["machine busy (accepting)"],
                ]
                for r in results
            ],
        )
    )
    print()
    rows = []
    for r in results:
        (heap_a, total_a, _, _), (heap_d, total_d, updates, hot) = r["size accepted"], r["size delivered"]
        rows.append(
            [
                r["shape"],
                r["delivered/s"],
                r["machine busy (delivering)"],
                mib(heap_a),
                mib(total_a),
                mib(heap_d),
                mib(total_d),
                f"{total_d / total_a:.2f}x",
                f"{hot:,} of {updates:,}",
            ]
        )
    print(
        harness.table(
            [
                "shape",
                "delivered/s",
                "machine busy",
                "heap accepted",
                "with indexes",
                "heap delivered",
                "with indexes",
                "delivered / accepted",
                "HOT updates",
            ],
            rows,
        )
    )
    kinds = ["workers", "BFF", "sandbox", "postgres"]
    cpu = [r["CPU ms per 1,000 delivered"] for r in results]
    print("\nCPU ms per 1,000 transactions delivered (steadier than delivered/s on a shared machine):\n")
    print(
        harness.table(
            ["shape", *kinds, "all"],
            [
                [r["shape"], *(f"{c[kind]:,.0f}" for kind in kinds), f"{sum(c.values()):,.0f}"]
                for r, c in zip(results, cpu, strict=True)
            ],
        )
    )
    rates = [float(r["delivered/s"]) for r in results]
    print(f"\ndelivered/s, fastest shape / slowest: {max(rates) / min(rates):.2f}x (goal <= 2x)")
    totals = [sum(c.values()) for c in cpu]
    print(f"CPU per transaction, dearest shape / cheapest: {max(totals) / min(totals):.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("verified: each account's ledger at the sandbox holds its transactions once, in order")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shapes", default="1000x100,20x10000", help="ACCOUNTSxTRANSACTIONS, comma-separated"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="accounts each worker delivers at once")
    parser.add_argument("--post-concurrency", type=int, default=8, help="POST requests in flight")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for delivery")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
