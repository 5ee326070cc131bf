"""(2) 1,000 concurrent requests for a lapsed link, across 2 worker processes: how many upstream reads?

The BFF runs with 2 uvicorn workers on one Postgres, and one sandbox (served on its own) stands in for Codat,
so the sandbox's counters see every call from both workers. The stored link is made to lapse on both sides:
- at Codat: the sandbox's clock is moved one hour on (POST /_sandbox/clock/advance), so its OTP has lapsed;
- here: the BFF's clock is the system clock, so the bench moves the stored `link_expires_at` one minute into
  the past, directly in the database, before the burst.
Goal: one upstream read (`get-connection`) in all, and every request answered with the same fresh link.
"""

import argparse
import asyncio
import time

import httpx

from bench import harness as h

BUSINESS = "bench-link"
UPSTREAM_READS = ("get-connection", "list-connections")


async def connect(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await h.register(http, BUSINESS, accounts=3)
        response = await http.post("/v1/bank-feed/connect", headers=h.user_headers(BUSINESS))
        response.raise_for_status()
        return str(response.json()["linkUrl"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    h.header(f"(2) {args.requests} concurrent requests for a lapsed link, {args.workers} workers")
    database = h.fresh_database("bench_link")
    with h.sandbox() as codat, h.bff(database, codat, workers=args.workers) as (url, proc):
        old_link = asyncio.run(connect(url))
        httpx.post(f"{codat}/_sandbox/clock/advance", json={"seconds": 3600}).raise_for_status()
        lapsed = h.sql(
            database,
            "UPDATE feed_connection SET link_expires_at = now() - interval '1 minute' "
            "WHERE business_id = $1 AND is_current",
            BUSINESS,
        )
        assert lapsed == "UPDATE 1", lapsed
        before = httpx.get(f"{codat}/_sandbox/counters").json()
        cpu_before = h.worker_cpu_seconds(proc)
        started = time.perf_counter()
        replies = asyncio.run(
            h.load(
                url,
                [("GET", "/v1/bank-feed/link", h.user_headers(BUSINESS))] * args.requests,
                connections=args.requests,
            )
        )  # all at once, each on its own connection
        wall = time.perf_counter() - started
        after = httpx.get(f"{codat}/_sandbox/counters").json()
        cpu = {pid: seconds - cpu_before.get(pid, 0) for pid, seconds in h.worker_cpu_seconds(proc).items()}

    reads = sum(after.get(op, 0) - before.get(op, 0) for op in UPSTREAM_READS)
    calls = sum(after.values()) - sum(before.values())
    ok = [r for r in replies if r.status == 200]
    links = {r.json()["linkUrl"] for r in ok}
    latencies = [r.seconds for r in replies]
    print(
        h.table(
            [
                "requests",
                "200 OK",
                "distinct links",
                "fresh (not the lapsed one)",
                "upstream reads",
                "all upstream calls",
                "wall s",
                "p50 ms",
                "p99 ms",
                "CPU s of each worker",
                "goal",
                "met",
            ],
            [
                [
                    args.requests,
                    len(ok),
                    len(links),
                    old_link not in links,
                    reads,
                    calls,
                    wall,
                    1000 * h.percentile(latencies, 0.5),
                    1000 * h.percentile(latencies, 0.99),
                    " + ".join(f"{seconds:.2f}" for seconds in cpu.values()),
                    "1 upstream read",
                    "yes" if reads == 1 and len(ok) == args.requests and len(links) == 1 else "NO",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
