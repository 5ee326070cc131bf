"""(1b) `GET /v1/bank-feed` and `GET /v1/bank-feed/link` for 1, 1,000 and 20,000 businesses, every token new.

What a fintech's customers do: each polls its own feed. Every request carries a token the server never saw
(a new subject each time, round-robin over the businesses), and each run starts a new BFF, so what it has
when the run begins is what any new replica has: the views stored in Postgres (and the live links, still
encrypted), taken in as it starts. Each server, the bare one too, is warmed up for 3 s first; the BFF on the
view, with subjects the measured run never sends. One worker and two; wrk (64 connections, 2 threads, a
Lua script picking the next token); the bare FastAPI endpoint measured in the same session, before, between
and after.

State, set up with SQL (setup only; 20,000 businesses through the API would take minutes): businesses of 3
accounts each, connected (a Codat company and connection, a link valid for 50 more minutes), and their views
stored as the BFF stores them. Two businesses' views are rendered by the BFF itself; the others are made
from the first one's by changing what differs (the business id, the connection's id) and their stamps read
with the BFF's own query, and the bench checks that the second one's made view is byte for byte the one the
BFF rendered.
Goals: view ≥ 0.8 of bare for 1 business, ≥ 0.6 for 20,000, p99 within 2 × bare's; 2 workers ≥ 1.6 × one;
link ≥ 0.5 of bare, no request over 1 s.
"""

import argparse
import asyncio
import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from app.bankfeed.cache import STAMP_SQL, STORE_SQL
from app.config import DEV_ENCRYPTION_KEY
from bench import harness as h

SIZES = (1, 1_000, 20_000)
WARM_SECONDS = 3  # every server, the bare one included, is warmed up this long before it is measured
TEMPLATE, CHECKED = "scale-000000", "scale-000001"
# Each thread puts its requests together before the run, and `request()` only hands the next one over: built
# per request (wrk.format, or even concatenating a head and the token), a request cost wrk ~30-40 µs of CPU
# here against ~18 µs for wrk's static request. On two cores the load generator's CPU is taken from the
# second worker: at 40 µs a request it alone held two workers under ~1.55 × one.
LUA = """
local path, threads = os.getenv("BENCH_PATH"), tonumber(os.getenv("BENCH_THREADS"))
local counter, requests, i = 0, {}, 0
function setup(thread) thread:set("offset", counter); counter = counter + 1 end
function init(args)
  local host = "\\r\\nHost: " .. wrk.host .. ":" .. wrk.port
  local head = "GET " .. path .. " HTTP/1.1" .. host .. "\\r\\nAuthorization: Bearer "
  local n = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if n % threads == offset then requests[#requests + 1] = head .. line .. "\\r\\n\\r\\n" end
    n = n + 1
  end
end
function request()
  i = i % #requests + 1
  return requests[i]
end
"""


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def business_id(n: int) -> str:
    return f"scale-{n:06d}"


def connection_id(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def sealed(link_url: str) -> str:
    """The link as the BFF stores it: encrypted at rest with its (dev) key (app/crypto.py)."""
    return Fernet(DEV_ENCRYPTION_KEY).encrypt(link_url.encode()).decode()


async def insert_businesses(url: str, count: int) -> None:
    """Businesses with 3 accounts and a current connection each: what `connect` leaves, as COPY writes it."""
    connection = await asyncpg.connect(dsn(url))
    try:
        now = await connection.fetchval("SELECT date_trunc('second', now())")
        expires = await connection.fetchval("SELECT now() + interval '50 minutes'")
        ids = [business_id(n) for n in range(count)]
        await connection.copy_records_to_table(
            "business",
            columns=["id", "name", "country", "time_zone", "codat_company_id", "feed_version", "created_at"],
            records=[(b, f"{b} LLC", "US", "America/New_York", str(uuid.uuid4()), 1, now) for b in ids],
        )
        await connection.copy_records_to_table(
            "bank_account",
            columns=["business_id", "id", "name", "account_type", "account_number", "routing_number"]
            + ["currency", "balance", "created_at"],
            records=[
                (b, f"acc-{a}", f"Account {a}", "checking", f"00012340000{a}", "021000021", "USD", 1000, now)
                for b in ids
                for a in range(3)
            ],
        )
        await connection.copy_records_to_table(
            "feed_connection",
            columns=["business_id", "is_current", "request_key", "codat_connection_id", "status"]
            + ["link_url", "link_expires_at", "created_at"],
            records=[
                (b, True, str(uuid.uuid4()), connection_id(n), "PendingAuth")
                + (sealed(f"http://127.0.0.1/link?otp={uuid.uuid4().hex}"), expires, now)
                for n, b in enumerate(ids)
            ],
        )
    finally:
        await connection.close()


async def store_views(url: str, bff_url: str, count: int) -> None:
    """Views for every business, made from the template's as the BFF renders it; one of them checked."""
    async with httpx.AsyncClient(base_url=bff_url, timeout=30) as http:
        rendered = {}
        for n in (0, 1):
            response = await http.get(
                f"/internal/v1/businesses/{business_id(n)}/bank-feed", headers=h.SERVICE_HEADERS
            )
            response.raise_for_status()
            rendered[n] = response.content
    connection = await asyncpg.connect(dsn(url))
    try:
        rows = []
        for n in range(2, count) if count > 2 else ():
            body = made_view(rendered[0], n)
            stamp = (await connection.fetchrow(STAMP_SQL, business_id(n)))["stamp"]
            rows.append((business_id(n), stamp, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'))
        await connection.executemany(STORE_SQL, rows)
    finally:
        await connection.close()
    assert made_view(rendered[0], 1) == rendered[1], (
        "a view made from the template is not what the BFF renders"
    )


def made_view(template: bytes, n: int) -> bytes:
    return template.replace(TEMPLATE.encode(), business_id(n).encode()).replace(
        connection_id(0).encode(), connection_id(n).encode()
    )


def token_file(directory: Path, businesses: int, tokens: int, tag: str = "user") -> Path:
    """`tokens` end-user tokens, each with a new subject, for the businesses in turn."""
    path = directory / f"{tag}-tokens-{businesses}.txt"
    with path.open("w") as out:
        for n in range(tokens):
            header = h.user_headers(business_id(n % businesses), user=f"{tag}-{n}")
            out.write(header["Authorization"].removeprefix("Bearer ") + "\n")
    return path


def wrk_tokens(url: str, path: str, tokens: Path, script: Path, seconds: int) -> dict[str, Any]:
    os.environ.update(BENCH_TOKENS=str(tokens), BENCH_PATH=path, BENCH_THREADS="2")
    return h.wrk(url, {}, seconds=seconds, script=script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each measured run")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument(
        "--tokens", type=int, default=120_000, help="distinct tokens per size (each used once)"
    )
    args = parser.parse_args()

    h.header("(1b) GET /v1/bank-feed and /link for many businesses, every token new")
    database = h.fresh_database("bench_scale")
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    script = work / "tokens.lua"
    script.write_text(LUA)
    # two at least: the view checked is made from the template's
    asyncio.run(insert_businesses(database, max(2, *args.sizes)))
    tokens = {size: token_file(work, size, args.tokens) for size in args.sizes}
    warm_tokens = {size: token_file(work, size, WARM_SECONDS * 10_000, "warm") for size in args.sizes}
    rows, results = [], {}

    def record(name: str, result: dict[str, Any]) -> None:
        results.setdefault(name, []).append(result)
        rows.append(
            [name, result["rps"], result["p50"], result["p99"], result["requests"]]
            + [f"{result['busy']:.0%}", f"{result['steal']:.0%}", result["errors"]]
        )

    with h.sandbox() as codat:
        with h.bff(database, codat) as (url, _):
            asyncio.run(store_views(database, url, max(2, *args.sizes)))
        with h.bare() as (bare_url, _):
            h.wrk(f"{bare_url}/bare", {}, seconds=WARM_SECONDS)  # warm-up, not recorded
            record("bare FastAPI", h.wrk(f"{bare_url}/bare", {}, seconds=args.seconds))
        for workers in args.workers:
            for size in args.sizes:
                for path in ("/v1/bank-feed", "/v1/bank-feed/link"):
                    with h.bff(database, codat, workers=workers) as (url, _):
                        # Warmed up as the bare endpoint is, on the view (not the link, whose first reads
                        # are part of what is measured), with subjects the measured run never sends.
                        wrk_tokens(url, "/v1/bank-feed", warm_tokens[size], script, WARM_SECONDS)
                        result = wrk_tokens(url, path, tokens[size], script, args.seconds)
                    businesses = f"{size:,} business{'es' * (size > 1)}"
                    record(f"{path}, {businesses}, {workers} worker{'s' * (workers > 1)}", result)
            with h.bare() as (bare_url, _):
                h.wrk(f"{bare_url}/bare", {}, seconds=WARM_SECONDS)
                record("bare FastAPI", h.wrk(f"{bare_url}/bare", {}, seconds=args.seconds))
    columns = ["run", "req/s", "p50 ms", "p99 ms", "requests", "machine busy", "stolen by the host"]
    print(h.table([*columns, "non-2xx; socket errors"], rows))
    print()
    print(verdicts(results, args))


def verdicts(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    bare = results["bare FastAPI"]
    bare_rps = sum(r["rps"] for r in bare) / len(bare)
    bare_p99 = sum(r["p99"] for r in bare) / len(bare)
    rows = []
    for name, runs in results.items():
        if name == "bare FastAPI":
            continue
        result = runs[0]
        ratio = result["rps"] / bare_rps
        if "/link" in name:
            goal, met = "≥ 0.5 × bare, p99 < 1 s", ratio >= 0.5 and result["p99"] < 1000
        elif name.startswith("/v1/bank-feed, 1 business"):
            goal, met = "≥ 0.8 × bare, p99 ≤ 2 × bare's", ratio >= 0.8 and result["p99"] <= 2 * bare_p99
        else:
            goal, met = "≥ 0.6 × bare, p99 ≤ 2 × bare's", ratio >= 0.6 and result["p99"] <= 2 * bare_p99
        if " 2 workers" in name:
            one = results[name.replace("2 workers", "1 worker")][0]["rps"]
            goal, met = f"≥ 1.6 × 1 worker (× {result['rps'] / one:.2f})", result["rps"] >= 1.6 * one
        rows.append([name, ratio, result["p99"] / bare_p99, goal, "yes" if met else "NO"])
    summary = f"bare FastAPI (mean of {len(bare)}): {bare_rps:,.0f} req/s, p99 {bare_p99:.2f} ms\n\n"
    return summary + h.table(["run", "ratio to bare", "p99 / bare's", "goal", "met"], rows)


if __name__ == "__main__":
    main()
