"""What each change to the hot path bought: `GET /v1/bank-feed` at each commit, served in-process.

wrk on a shared 2-core machine swings by a third from one minute to the next; this does not: the app of each
commit (unpacked with `git archive` into a temporary directory) is called as an ASGI app, 64 requests at a
time, in one process, with no HTTP and no network; the CPU time of that process per request is what the
change saved (the stamp's round trip to Postgres included). The bare endpoint is measured the same way.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO

from bench import harness as h

COMMITS = [
    ("before", "1e0fa97"),
    ("+ verified tokens remembered, verified on the loop", "60831e1"),
    ("+ view cache checked against a stamp (raw asyncpg)", "15bdbb6"),
    ("+ cached_property for the rendering, metric children", "880f399"),
    ("+ answered from the cache before routing", "8e6248c"),
    ("+ stamp reads first come, first served", "6f4f8c4"),
]
REQUESTS, CONCURRENCY = 20_000, 64


async def measure(app, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """CPU µs per request and requests per second, 64 at a time, after a warm-up."""
    scope = h.asgi_scope("GET", path, [(b"host", b"127.0.0.1"), *headers])

    async def receive():  # type: ignore[no-untyped-def]
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses = []

    async def send(message):  # type: ignore[no-untyped-def]
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def worker(count: int) -> None:
        for _ in range(count):
            await app(dict(scope, state={}), receive, send)

    await asyncio.gather(*(worker(500 // CONCURRENCY + 1) for _ in range(CONCURRENCY)))
    statuses.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(REQUESTS // CONCURRENCY) for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert set(statuses) == {200}, set(statuses)
    return 1e6 * cpu / len(statuses), len(statuses) / wall


async def in_process(database: str, business: str) -> None:
    """Run in a child process whose `app` package is the one of the commit under test."""
    if business == "-":
        from bench.bare_app import create_app

        print(*await measure(create_app(), "/bare", []))
        return
    os.environ.update(h.bff_env(database, "http://127.0.0.1:9"))
    from app.main import create_served_app

    app = create_served_app()
    async with app.router.lifespan_context(app):
        print(
            *await measure(
                app, "/v1/bank-feed", [(b"authorization", h.user_headers(business)["Authorization"].encode())]
            )
        )


def run(commit: str | None, database: str, business: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as source:
        path = str(h.ROOT)
        if commit is not None:
            archive = subprocess.run(
                ["git", "archive", commit, "app"], cwd=h.ROOT, capture_output=True, check=True
            ).stdout
            tarfile.open(fileobj=BytesIO(archive)).extractall(source)
            path = f"{source}:{h.ROOT}"
        out = subprocess.run(
            [h.PYTHON, "-m", "bench.steps", "--in-process", database, business],
            check=True,
            text=True,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": path},
            cwd=source,
        ).stdout
    cpu_us, rps = map(float, out.split()[-2:])
    return cpu_us, rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--in-process", nargs=2, metavar=("DATABASE", "BUSINESS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        import uvloop

        uvloop.run(in_process(*args.in_process))
        return

    h.header("What each change bought: GET /v1/bank-feed in-process, 64 at a time")
    from bench.read_view import BUSINESS, store_state

    database = h.fresh_database("bench_steps")
    with h.sandbox() as codat, h.bff(database, codat) as (url, _):
        asyncio.run(store_state(url))
    bare_us, bare_rps = run(None, database, "-")
    rows = [["bare FastAPI endpoint", "", bare_us, bare_rps, 1.0]]
    for name, commit in COMMITS:
        cpu_us, rps = run(commit, database, BUSINESS)
        rows.append([name, commit, cpu_us, rps, rps / bare_rps])
    print(h.table(["app", "commit", "CPU µs a request", "requests/s (one process)", "ratio to bare"], rows))


if __name__ == "__main__":
    sys.exit(main())
