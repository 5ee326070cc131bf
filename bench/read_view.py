"""(1) `GET /v1/bank-feed` with its state already stored, beside a bare FastAPI endpoint served the same way.

wrk, 64 connections, 2 threads, fixed duration; one worker each, the BFF run by `bankfeeds-bff serve` and the
bare endpoint by uvicorn with the same HTTP protocol (bench/README.md).
Goal (issue 18): req/s at least 0.8 of the bare endpoint's, p99 within 2 × the bare endpoint's p99.
"""

import argparse
import asyncio

import httpx

from bench import harness as h

BUSINESS = "bench-read"


async def store_state(base_url: str) -> None:
    """A business with 3 accounts, onboarded (company, connection, accounts at the sandbox), refreshed."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await h.register(http, BUSINESS, accounts=3)
        headers = h.user_headers(BUSINESS)
        (await http.post("/v1/bank-feed/connect", headers=headers)).raise_for_status()
        (await http.post("/v1/bank-feed/refresh", headers=headers)).raise_for_status()
        view = await http.get("/v1/bank-feed", headers=headers)
        view.raise_for_status()
        print(f"view: {len(view.content)} B, ETag {view.headers['etag']}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15, help="duration of each measured run")
    parser.add_argument(
        "--rounds", type=int, default=2, help="bare, BFF, bare, BFF, ... (the mean is reported)"
    )
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    h.header("(1) GET /v1/bank-feed vs a bare FastAPI endpoint")
    database = h.fresh_database("bench_read")
    with (
        h.sandbox() as codat,
        h.bff(database, codat) as (bff_url, bff_proc),
        h.bare() as (bare_url, bare_proc),
    ):
        asyncio.run(store_state(bff_url))
        targets = {
            "bare FastAPI": (f"{bare_url}/bare", {}, bare_proc),
            "GET /v1/bank-feed": (f"{bff_url}/v1/bank-feed", h.user_headers(BUSINESS), bff_proc),
        }
        for url, headers, _ in targets.values():
            h.wrk(url, headers, seconds=3, connections=args.connections)  # warm-up, not recorded
        runs: dict[str, list[dict]] = {name: [] for name in targets}
        rows = []
        for round_ in range(1, args.rounds + 1):
            for name, (url, headers, proc) in targets.items():
                cpu = h.cpu_seconds(proc)
                result = h.wrk(url, headers, seconds=args.seconds, connections=args.connections)
                result["cpu"] = (h.cpu_seconds(proc) - cpu) / args.seconds
                runs[name].append(result)
                rows.append(
                    [
                        f"{name} #{round_}",
                        result["rps"],
                        result["p50"],
                        result["p99"],
                        result["requests"],
                        f"{result['cpu']:.0%}",
                        f"{result['busy']:.0%}",
                        f"{result['steal']:.0%}",
                        result["errors"],
                    ]
                )
    print(
        h.table(
            [
                "run",
                "req/s",
                "p50 ms",
                "p99 ms",
                "requests",
                "server CPU",
                "machine busy",
                "stolen by the host",
                "non-2xx; socket errors",
            ],
            rows,
        )
    )

    mean = {
        name: {k: sum(r[k] for r in rs) / len(rs) for k in ("rps", "p50", "p99")} for name, rs in runs.items()
    }
    bare_rps, ours = mean["bare FastAPI"]["rps"], mean["GET /v1/bank-feed"]
    ratio = ours["rps"] / bare_rps
    print()
    print(
        h.table(
            ["mean", "req/s", "p50 ms", "p99 ms", "ratio to bare", "goal", "met"],
            [
                [
                    "bare FastAPI",
                    bare_rps,
                    mean["bare FastAPI"]["p50"],
                    mean["bare FastAPI"]["p99"],
                    1.0,
                    "",
                    "",
                ],
                [
                    "GET /v1/bank-feed",
                    ours["rps"],
                    ours["p50"],
                    ours["p99"],
                    ratio,
                    "ratio ≥ 0.8, p99 ≤ 2 × bare's",
                    "yes" if ratio >= 0.8 and ours["p99"] <= 2 * mean["bare FastAPI"]["p99"] else "NO",
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
