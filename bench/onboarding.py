"""(3) and (4): onboarding when every Codat call takes L = 50 ms more, ours against Codat's SDK step by step.

The sandbox, served on its own, adds L to every call (knob `latencyMs`). For 1, 10, 50 and 500 accounts:
- ours: `POST /v1/bank-feed/connect` for a business registered with that many accounts (one worker);
  it creates the company, the connection, then the source accounts in batches of 100, sent at once;
- the SDK (up to 50 accounts): what a developer would write without us with Codat's `codat-bankfeeds` SDK,
  one call at a time: create the company, the connection (its linkUrl is the link), then each account.
Each is timed by the wall clock of the caller, the median of a few runs, each on a new business, after a
warm-up of connects (a replica in service: its pooled connections have prepared connect's statements and
settled on their plans).
Goals: the 3-round-trip floor (company, connection, one wave of batches): for 50 accounts ours ≤ 3 L + 30 ms,
for 500 ≤ 4 L; and for 50 at least 5 times faster than the SDK done step by step.
"""

import argparse
import base64
import statistics
import time
import uuid

import httpx
from codat_bankfeeds import CodatBankFeeds
from codat_bankfeeds.models import shared
from codat_bankfeeds.utils import RetryConfig

from app.config import DEV_SANDBOX_API_KEY
from bench import harness as h

ACCOUNT_COUNTS = (1, 10, 50, 500)
SDK_AT_MOST = 50  # accounts: the SDK one call at a time would take 500 × L for 500
POOL = 15  # the BFF's Postgres connections, all kept (app/config.py)
# Postgres plans a prepared statement afresh for each of its first 5 runs on a connection, then settles on a
# generic plan (https://www.postgresql.org/docs/15/sql-prepare.html): ~2 ms of planning per connect before.
WARM_UP_CONNECTS = 6 * POOL


def ours(http: httpx.Client, accounts: int) -> float:
    business = f"onboard-{accounts}-{uuid.uuid4().hex[:8]}"
    h.run(h.register_with(http.base_url, business, accounts, concurrently=16))
    started = time.perf_counter()
    response = http.post(
        "/v1/bank-feed/connect", headers={**h.user_headers(business), "Idempotency-Key": str(uuid.uuid4())}
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    assert len(response.json()["accounts"]) == accounts
    return elapsed


def with_the_sdk(codat: CodatBankFeeds, accounts: int) -> float:
    started = time.perf_counter()
    company = codat.companies.create(request={"name": f"SDK business {uuid.uuid4().hex[:8]}"})
    connection = codat.connections.create(
        request={"company_id": company.id, "request_body": {"platform_key": "hcws"}}
    )
    for n in range(accounts):
        codat.source_accounts.create(
            request={
                "company_id": company.id,
                "connection_id": connection.id,
                "request_body": {
                    "id": f"acc-{n:03d}",
                    "account_name": f"Account {n}",
                    "account_type": "checking",
                    "account_number": f"0001234{n:05d}",
                    "routing_info": {"bank_code": "021000021", "type": "aba"},
                    "currency": "USD",
                    "balance": 1000,
                },
            }
        )
    elapsed = time.perf_counter() - started
    assert connection.link_url
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="runs for each count; the median is reported")
    args = parser.parse_args()
    latency = args.latency_ms / 1000

    h.header(f"(3) and (4) onboarding with L = {args.latency_ms} ms on every Codat call")
    database = h.fresh_database("bench_onboarding")
    rows = []
    # The accounts are registered by one internal service: 1,500 for the runs of 500 alone.
    limits = {"BANKFEEDS_LIMITS__PER_SERVICE": "1000000/minute"}
    with h.sandbox() as codat_url, h.bff(database, codat_url, env=limits) as (url, _):
        httpx.put(f"{codat_url}/_sandbox/knobs", json={"latencyMs": args.latency_ms}).raise_for_status()
        security = shared.Security(
            auth_header="Basic " + base64.b64encode(DEV_SANDBOX_API_KEY.encode()).decode()
        )
        with (
            httpx.Client(base_url=url, timeout=60) as http,
            CodatBankFeeds(
                security=security, server_url=codat_url, retry_config=RetryConfig("none", None, False)
            ) as codat,
        ):
            # Warm-up, not recorded: the BFF as a replica in service, each of its pooled connections having
            # prepared connect's statements and settled on their plans (asyncpg prepares a statement once per
            # connection, and each run's registration spreads the next connect over the pool: a cold
            # connection adds ~3 ms).
            for _ in range(WARM_UP_CONNECTS):
                ours(http, 8)
            with_the_sdk(codat, 1)
            for accounts in ACCOUNT_COUNTS:
                mine = statistics.median(ours(http, accounts) for _ in range(args.runs))
                if accounts > SDK_AT_MOST:
                    rows.append([accounts, 1000 * mine, mine / latency, "not run", "", ""])
                    continue
                sdk = statistics.median(with_the_sdk(codat, accounts) for _ in range(args.runs))
                rows.append([accounts, 1000 * mine, mine / latency, 1000 * sdk, sdk / latency, sdk / mine])
        counters = httpx.get(f"{codat_url}/_sandbox/counters").json()

    print(h.table(["accounts", "ours ms", "ours / L", "SDK step by step ms", "SDK / L", "SDK / ours"], rows))
    by_count = {row[0]: row for row in rows}
    fifty, five_hundred = by_count[50], by_count[500]
    print()
    print(
        h.table(
            ["goal", "figure", "met"],
            [
                [
                    "(3) 50 accounts: ours ≤ 3 L + 30 ms",
                    f"{fifty[1]:.0f} ms ≤ {3 * args.latency_ms + 30} ms",
                    "yes" if fifty[1] <= 3 * args.latency_ms + 30 else "NO",
                ],
                [
                    "(3) 500 accounts: ours ≤ 4 L",
                    f"{five_hundred[1]:.0f} ms ≤ {4 * args.latency_ms} ms",
                    "yes" if five_hundred[1] <= 4 * args.latency_ms else "NO",
                ],
                [
                    "(4) 50 accounts: ours ≥ 5 × faster than the SDK",
                    f"× {fifty[5]:.1f}",
                    "yes" if fifty[5] >= 5 else "NO",
                ],
            ],
        )
    )
    print(f"\nCalls the sandbox served: {dict(sorted(counters.items()))}")


if __name__ == "__main__":
    main()
