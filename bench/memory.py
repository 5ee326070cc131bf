"""(5) A worker's memory: its RSS after 20,000 requests, and how much it grew over the second 10,000.

One uvicorn worker. 200 businesses (3 accounts each, half of them onboarded at the sandbox). The requests,
32 at a time: GET /v1/bank-feed for a business drawn in turn, half of them with a token minted for that
request (so the token memo fills up to its bound and stays there, and the route answers), half with the
business's own token (answered from the view cache before routing); one in ten with If-None-Match (a 304),
one in twenty for a business nobody registered (a 404), one in twenty the internal view (service token).
RSS is read from /proc (psutil) after each 2,000 requests. Goal: under 5 MB of growth over the second 10,000.
"""

import argparse
import asyncio

import httpx
import psutil

from bench import harness as h

BUSINESSES = 200
STEP = 2000


async def set_up(base_url: str) -> dict[str, str]:
    """Register the businesses, onboard half of them; the ETag of each view."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        gate = asyncio.Semaphore(16)

        async def one(n: int) -> tuple[str, str]:
            business = f"mem-{n:03d}"
            async with gate:
                await h.register(http, business, accounts=3)
                if n % 2:
                    (
                        await http.post("/v1/bank-feed/connect", headers=h.user_headers(business))
                    ).raise_for_status()
                view = await http.get("/v1/bank-feed", headers=h.user_headers(business))
                return business, view.headers["etag"]

        return dict(await asyncio.gather(*(one(n) for n in range(BUSINESSES))))


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
        else:
            batch.append(("GET", "/v1/bank-feed", user))
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    h.header(f"(5) RSS of one worker over {args.requests:,} requests")
    database = h.fresh_database("bench_memory")
    rows, rss = [], {}
    with h.sandbox() as codat, h.bff(database, codat) as (url, proc):
        worker = psutil.Process(proc.pid)
        etags = asyncio.run(set_up(url))
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
    print(h.table(["requests", "RSS MiB", "growth over the last 2,000 MiB", "statuses"], rows))
    half, end = args.requests // 2, args.requests
    growth = (rss[end] - rss[half]) / 2**20
    print()
    print(
        h.table(
            ["RSS after all", "growth over the second half", "goal", "met"],
            [
                [
                    f"{rss[end] / 2**20:.1f} MiB",
                    f"{growth:.2f} MiB",
                    "< 5 MB",
                    "yes" if growth * 2**20 < 5e6 else "NO",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
