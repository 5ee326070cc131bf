"""(1c) CPU a request of the polled reads, in-process: steadier than wrk's req/s on a shared machine.

The app (`create_served_app`, as uvicorn serves it) is called as an ASGI app, 64 requests at a time, and the
process's CPU time (user + system) is divided by the requests; the bare endpoint is measured the same way.
HTTP parsing and writing, which cost both the same, are left out, so the ratios are lower than wrk's would be
on a quiet machine. Businesses of bench.read_scale (set up the same way). Cases: the same token again and
again (the memo's case), and every request with a token never seen, for 1 and 20,000 businesses; the view and
the link. "cold" is the first pass over the businesses (each view or link read from Postgres once),
"warm" a second pass with new tokens again.
"""

import argparse
import asyncio
import os
import time
from typing import Any

from bench import harness as h
from bench import read_scale

CONCURRENCY = 64


def scope_for(path: str, authorization: str | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1")]
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    return h.asgi_scope("GET", path, headers)


async def cpu_per_request(app: Any, scopes: list[dict[str, Any]]) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    pending = iter(scopes)

    async def worker() -> None:
        for scope in pending:
            await app(dict(scope, state={}), receive, send)

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    cpu = time.process_time() - cpu
    assert set(statuses) == {200}, set(statuses)
    return 1e6 * cpu / len(statuses)


def new_tokens(businesses: int, count: int, tag: str) -> list[str]:
    return [
        h.user_headers(read_scale.business_id(n % businesses), user=f"{tag}-{n}")["Authorization"]
        for n in range(count)
    ]


async def measure(database: str, requests: int, businesses: int) -> list[list[object]]:
    from bench.bare_app import create_app

    bare = await cpu_per_request(create_app(), [scope_for("/bare", None)] * requests)
    rows: list[list[object]] = [["bare FastAPI endpoint", "", bare, 1.0]]
    os.environ.update(h.bff_env(database, "http://127.0.0.1:9"))
    from app.main import create_served_app

    app = create_served_app()
    async with app.router.lifespan_context(app):
        same = h.user_headers(read_scale.business_id(0))["Authorization"]
        for path in ("/v1/bank-feed", "/v1/bank-feed/link"):
            await cpu_per_request(app, [scope_for(path, same)] * 500)  # the listener connects meanwhile
            us = await cpu_per_request(app, [scope_for(path, same)] * requests)
            rows.append([path, "1 business, the same token", us, bare / us])
            for size in (1, businesses):
                for phase in ("cold", "warm"):
                    tokens = new_tokens(size, requests, f"{path}-{size}-{phase}")
                    us = await cpu_per_request(app, [scope_for(path, t) for t in tokens])
                    rows.append([path, f"{size:,} business(es), every token new, {phase}", us, bare / us])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--businesses", type=int, default=20_000)
    args = parser.parse_args()

    h.header("(1c) CPU a request, in-process: the view and the link")
    database = h.fresh_database("bench_read_cpu")
    asyncio.run(read_scale.insert_businesses(database, args.businesses))
    with h.sandbox() as codat, h.bff(database, codat) as (url, _):
        asyncio.run(read_scale.store_views(database, url, args.businesses))
    ticks = h.machine_ticks()
    import uvloop

    rows = uvloop.run(measure(database, args.requests, args.businesses))
    busy, steal = h.machine_use(ticks, h.machine_ticks())
    print(h.table(["path", "case", "CPU µs a request", "bare's CPU / this (≈ ratio)"], rows))
    print(f"\nmachine busy {busy:.0%}, stolen by the host {steal:.0%} while measuring")


if __name__ == "__main__":
    main()
