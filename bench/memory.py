"""(5) A worker's memory: its RSS after 100,000 requests over 20,000 businesses, and its growth after half.

One uvicorn worker. The businesses of bench.read_scale (3 accounts each, connected, their views stored),
set up the same way. The requests, 32 at a time, for the businesses in turn: GET /v1/bank-feed, half of
them with a token minted for that request (so the token memo fills up to its bound and stays there), half
with the business's own token; one in ten with If-None-Match (a 304), one in ten the link, one in twenty
for a business nobody registered (a 404), one in twenty the internal view (service token). So every bounded
structure (token memo, view and link caches, the metrics' children) is filled to its bound in the first half.
RSS is read from /proc (psutil) after each 10,000 requests. Goal: under 5 MB of growth over the second half.
"""

import argparse
import asyncio

import asyncpg
import psutil

from bench import harness as h
from bench import read_scale

STEP = 10_000


async def etags_of(database: str, businesses: int) -> dict[str, str]:
    """Each business's stored ETag (what a 304 needs), read once before the measurement."""
    connection = await asyncpg.connect(read_scale.dsn(database))
    try:
        rows = await connection.fetch("SELECT business_id, etag FROM stored_bank_feed_view")
    finally:
        await connection.close()
    etags = {row["business_id"]: row["etag"] for row in rows}
    return {read_scale.business_id(n): etags[read_scale.business_id(n)] for n in range(businesses)}


Headers = dict[str, str]


def requests(etags: dict[str, str], tokens: dict[str, Headers], start: int, count: int) -> list[h.Request]:
    businesses = list(etags)
    batch = []
    for n in range(start, start + count):
        business = businesses[n % len(businesses)]
        user = tokens[business] if n % 2 else h.user_headers(business, user=f"user-{n}")  # a new token
        if n % 20 == 7:
            batch.append(("GET", "/v1/bank-feed", h.user_headers(f"nobody-{n}", user=f"user-{n}")))
        elif n % 20 == 13:
            batch.append(("GET", f"/internal/v1/businesses/{business}/bank-feed", h.SERVICE_HEADERS))
        elif n % 10 == 3:
            batch.append(("GET", "/v1/bank-feed", {**user, "If-None-Match": etags[business]}))
        elif n % 10 == 5:
            batch.append(("GET", "/v1/bank-feed/link", user))
        else:
            batch.append(("GET", "/v1/bank-feed", user))
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--businesses", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    h.header(f"(5) RSS of one worker over {args.requests:,} requests for {args.businesses:,} businesses")
    database = h.fresh_database("bench_memory")
    asyncio.run(read_scale.insert_businesses(database, args.businesses))
    rows, rss = [], {}
    with h.sandbox() as codat:
        with h.bff(database, codat) as (url, _):
            asyncio.run(read_scale.store_views(database, url, args.businesses))
        etags = asyncio.run(etags_of(database, args.businesses))
        with h.bff(database, codat) as (url, proc):
            worker = psutil.Process(proc.pid)
            measure(url, worker, etags, args, rows, rss)
    report(rows, rss, args.requests)


def measure(
    url: str, worker: psutil.Process, etags: dict[str, str], args: argparse.Namespace, rows: list, rss: dict
) -> None:
    tokens = {business: h.user_headers(business) for business in etags}
    rss[0] = worker.memory_info().rss
    rows.append([0, rss[0] / 2**20, "", ""])
    for start in range(0, args.requests, STEP):
        replies = asyncio.run(h.load(url, requests(etags, tokens, start, STEP), args.connections))
        statuses = sorted({r.status for r in replies})
        done = start + STEP
        rss[done] = worker.memory_info().rss
        rows.append(
            [done, rss[done] / 2**20, (rss[done] - rss[start]) / 2**20, ", ".join(map(str, statuses))]
        )


def report(rows: list, rss: dict, requests: int) -> None:
    print(h.table(["requests", "RSS MiB", f"growth over the last {STEP:,} MiB", "statuses"], rows))
    half = requests // 2 // STEP * STEP
    growth = (rss[requests] - rss[half]) / 2**20
    print()
    print(
        h.table(
            ["RSS after all", "growth over the second half", "goal", "met"],
            [
                [
                    f"{rss[requests] / 2**20:.1f} MiB",
                    f"{growth:.2f} MiB",
                    "< 5 MB",
                    "yes" if growth * 2**20 < 5e6 else "NO",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
