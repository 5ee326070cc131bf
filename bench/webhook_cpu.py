"""CPU and round trips of one push-outcome webhook (`bankTransactions.write.successful`), in-process.

The app (`create_served_app`, as uvicorn serves it) is called as an ASGI app with signed webhooks for pushes
whose outcome the worker has already recorded (no batch pending: the common case), 8 at a time as the
sandbox sends them. The BFF's CPU (user + system of this process) and Postgres's (its backends for this
database) are divided by the webhooks. With --round-trips the app reaches Postgres through a counting proxy
on loopback (its own CPU then counts too: the CPU figures of that run are not comparable): each write from
the app to the server is one round trip.
"""

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psutil
from sqlalchemy.engine import make_url
from svix.webhooks import Webhook

from bench import harness as h

CONCURRENCY = 8


class CountingProxy:
    """Forwards loopback TCP to Postgres and counts the app's writes (one for each round trip)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writes = 0

    async def start(self) -> int:
        server = await asyncio.start_server(self._pipe_client, "127.0.0.1", 0)
        return int(server.sockets[0].getsockname()[1])

    async def _pipe_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            await asyncio.gather(self._copy(reader, up_writer, count=True), self._copy(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the loop is closing: the bench is over

    async def _copy(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                self.writes += count
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the app or the server dropped its end
        writer.close()


def webhook_scope(secret: str, body: bytes, webhook_id: str) -> tuple[dict[str, Any], bytes]:
    now = datetime.now(UTC)
    headers = {
        "host": "127.0.0.1",
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, body.decode()),
    }
    scope = h.asgi_scope("POST", "/webhooks/codat", [(k.encode(), v.encode()) for k, v in headers.items()])
    return scope, body


def push_webhooks(secret: str, count: int) -> list[tuple[dict[str, Any], bytes]]:
    """Signed `bankTransactions.write.successful` events for pushes no batch is pending on."""
    requests = []
    for _ in range(count):
        body = json.dumps(
            {
                "id": str(uuid.uuid4()),
                "eventType": "bankTransactions.write.successful",
                "generatedDate": datetime.now(UTC).isoformat(),
                "payload": {"id": str(uuid.uuid4()), "status": "Success"},
            }
        ).encode()
        requests.append(webhook_scope(secret, body, f"msg_{uuid.uuid4().hex}"))
    return requests


async def post_all(app: Any, requests: list[tuple[dict[str, Any], bytes]]) -> None:
    statuses: list[int] = []
    pending = iter(requests)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def worker() -> None:
        for scope, body in pending:

            async def receive(body: bytes = body) -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            await app(dict(scope, state={}), receive, send)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    assert set(statuses) == {204}, set(statuses)


def backends(database: str) -> list[psutil.Process]:
    import asyncpg

    async def pids() -> list[int]:
        server = make_url(h.PG_SERVER).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(server)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
            )
        finally:
            await connection.close()
        return [row["pid"] for row in rows]

    return [psutil.Process(pid) for pid in asyncio.run(pids())]


def cpu_of(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


async def measure(database_url: str, count: int, proxy: CountingProxy | None) -> tuple[float, float, float]:
    if proxy is not None:
        port = await proxy.start()
        database_url = make_url(database_url).set(port=port).render_as_string(hide_password=False)
    os.environ.update(h.bff_env(database_url, "http://127.0.0.1:9"))
    from app.main import create_served_app

    app = create_served_app()
    secret = app.state.settings.webhooks.signing_secret.get_secret_value()
    database = make_url(database_url).database
    assert database is not None
    async with app.router.lifespan_context(app):
        await post_all(app, push_webhooks(secret, 500))  # connections open, statements prepared
        requests = push_webhooks(secret, count)
        postgres = await asyncio.to_thread(backends, database)
        writes = proxy.writes if proxy else 0
        pg_cpu, cpu = cpu_of(postgres), time.process_time()
        await post_all(app, requests)
        cpu, pg_cpu = time.process_time() - cpu, cpu_of(postgres) - pg_cpu
        round_trips = (proxy.writes - writes) / count if proxy else float("nan")
    return 1e6 * cpu / count, 1e6 * pg_cpu / count, round_trips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=5_000)
    parser.add_argument(
        "--round-trips", action="store_true", help="through a counting proxy (its CPU counts too)"
    )
    args = parser.parse_args()

    h.header("CPU and round trips of a push-outcome webhook, in-process")
    database = h.fresh_database("bench_webhook_cpu")
    proxy = CountingProxy(make_url(database).port or 5432) if args.round_trips else None
    ticks = h.machine_ticks()
    import uvloop

    bff_us, pg_us, round_trips = uvloop.run(measure(database, args.webhooks, proxy))
    busy, steal = h.machine_use(ticks, h.machine_ticks())
    print(
        h.table(
            ["webhooks", "BFF CPU µs a webhook", "Postgres CPU µs a webhook", "round trips a webhook"],
            [[args.webhooks, bff_us, pg_us, round_trips]],
        )
    )
    print(f"\nmachine busy {busy:.0%}, stolen by the host {steal:.0%} while measuring")


if __name__ == "__main__":
    main()
