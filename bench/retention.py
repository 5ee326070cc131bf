"""(6) Retention: prune 100,000 old webhook events and 100,000 expired idempotency records while the service
keeps answering; p50/p99 of `GET /v1/bank-feed` before and during the prune.

The rows are inserted straight into the bench database (`generate_series`), old enough for the default
retention (applied 40 days ago; expired 3 days ago). Then, with the BFF on one worker under a steady load
(16 connections, one request at a time each), `bankfeeds-bff prune` runs as cron would run it, deleting in
batches of `retention.batch_size` (1,000) rows, one short transaction each.
Goal: every request answered 200, p99 during the prune within a few ms of the p99 before; every old row gone.
"""

import argparse
import asyncio
import json
import os
import subprocess
import time

import httpx

from bench import harness as h

BUSINESS = "bench-retention"
CONNECTIONS = 16


def seed(database: str, rows: int) -> None:
    h.sql(
        database,
        "INSERT INTO webhook_event (id, event_type, received_at, processed_at, body)"
        " SELECT 'old-' || n, 'connection.connected', now() - interval '40 days',"
        " now() - interval '40 days', '{}'"
        " FROM generate_series(1, $1) AS n",
        rows,
    )
    h.sql(
        database,
        "INSERT INTO idempotency_record (caller, key, request_hash, locked_until, expires_at)"
        " SELECT 'user:bench', 'old-' || n, 'h', now() - interval '3 days', now() - interval '3 days'"
        " FROM generate_series(1, $1) AS n",
        rows,
    )


def count(database: str, table: str) -> int:
    import asyncpg
    from sqlalchemy.engine import make_url

    async def read() -> int:
        dsn = make_url(database).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        try:
            return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
        finally:
            await connection.close()

    return asyncio.run(read())


async def steady_load(url: str, stop: asyncio.Event) -> list[tuple[float, float, int]]:
    """(finished at, seconds, status) of every request, until `stop`."""
    target = httpx.URL(url)
    headers = "".join(f"{k}: {v}\r\n" for k, v in h.user_headers(BUSINESS).items())
    request = f"GET /v1/bank-feed HTTP/1.1\r\nHost: {target.host}\r\n{headers}\r\n".encode("latin-1")
    done: list[tuple[float, float, int]] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            while not stop.is_set():
                started = time.perf_counter()
                writer.write(request)
                reply = await h._read_reply(reader, started)
                done.append((time.perf_counter(), reply.seconds, reply.status))
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return done


async def measure(url: str, database: str, env: dict[str, str], warmup: float) -> dict[str, object]:
    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(url, stop))
    await asyncio.sleep(warmup)
    prune_started = time.perf_counter()
    prune = await asyncio.create_subprocess_exec(
        h.PYTHON, "-m", "app.cli", "prune", cwd=h.ROOT, env=env, stdout=subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(prune.communicate(), timeout=600)
    prune_ended = time.perf_counter()
    await asyncio.sleep(1)
    stop.set()
    done = await load
    return {
        "deleted": json.loads(out.decode().strip().splitlines()[-1]),
        "prune_seconds": prune_ended - prune_started,
        "before": [s for at, s, _ in done if at < prune_started],
        "during": [s for at, s, _ in done if prune_started <= at <= prune_ended],
        "statuses": sorted({status for _, _, status in done}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="of each table")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the prune")
    args = parser.parse_args()

    h.header(f"(6) Pruning {args.rows:,} webhook events and {args.rows:,} idempotency records under load")
    database = h.fresh_database("bench_retention")
    seed(database, args.rows)
    with h.sandbox() as codat, h.bff(database, codat, workers=1) as (url, _):
        h.run(h.register_with(url, BUSINESS, accounts=3))
        env = {**os.environ, **h.bff_env(database, codat)}
        result = asyncio.run(measure(url, database, env, args.warmup))
    left = {table: count(database, table) for table in ("webhook_event", "idempotency_record")}
    rows = []
    for phase in ("before", "during"):
        latencies = result[phase]
        assert isinstance(latencies, list)
        rows.append(
            [
                f"GET /v1/bank-feed {phase} the prune",
                len(latencies),
                h.percentile(latencies, 0.5) * 1000,
                h.percentile(latencies, 0.99) * 1000,
                max(latencies) * 1000,
            ]
        )
    print(h.table(["phase", "requests", "p50 ms", "p99 ms", "max ms"], rows))
    print(
        f"\npruned {result['deleted']} in {result['prune_seconds']:.1f} s (batches of 1,000 rows);"
        f" statuses seen: {result['statuses']}; rows left: {left}"
    )


if __name__ == "__main__":
    main()
