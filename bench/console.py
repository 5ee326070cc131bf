"""(7) The console's "needs action" list with 10,000 businesses, 1% of them broken, on Postgres.

Seeded with SQL: 10,000 businesses with two accounts each on a Linked connection; every 100th has an account
disconnected in QuickBooks (broken), every 50th (off the hundreds) still finishing in QuickBooks. The events
loop's projector reads the first 200 businesses' views into FeedState, as `bankfeeds-bff worker` does (timed);
the other 9,800 FeedState rows are written by SQL with what the projector would write (projecting them all
takes minutes on this shared 2-core machine and measures nothing the list depends on).
The list is walked page by page and compared with the seed; then `GET /internal/v1/console/feeds` is loaded
(first pages and later pages, 4 connections) and its latency printed. Goal: p99 under 100 ms.
"""

import argparse
import asyncio
import random

import httpx

from app.auth.tokens import mint_service_token
from bench import harness as h

BUSINESSES = 10_000
HEADERS = {"Authorization": "Bearer " + mint_service_token(h.AUTH, "bench-console", ["console:read"])}
SEED = [
    """INSERT INTO business (id, name, country, time_zone, codat_company_id, feed_version,
                             created_at, updated_at)
       SELECT 'biz-' || lpad(i::text, 5, '0'), 'Business ' || i, 'US', 'America/New_York',
              gen_random_uuid()::text, 1, now(), now()
       FROM generate_series(1, $1::int) i""",
    """INSERT INTO bank_account (business_id, id, name, account_type, account_number, routing_number,
                                 currency,
                                 balance, created_at, updated_at)
       SELECT b.id, 'acc-' || a, 'Account ' || a, 'checking', '00001234' || a, '021000021', 'USD', 0,
              now(), now()
       FROM business b, generate_series(1, 2) a""",
    """INSERT INTO feed_connection (business_id, is_current, request_key, codat_connection_id, status,
                                    created_at)
       SELECT id, true, gen_random_uuid()::text, gen_random_uuid()::text, 'Linked', now() FROM business""",
    """INSERT INTO feed_account (connection_id, account_id, business_id, request_key, registered, status,
                                 feed_start_date, created_at)
       SELECT c.id, a.id, a.business_id, gen_random_uuid()::text, true,
              CASE WHEN a.id = 'acc-1' AND substr(a.business_id, 5)::int % 100 = 0 THEN 'disconnected'
                   WHEN a.id = 'acc-2' AND substr(a.business_id, 5)::int % 50 = 25 THEN 'pending'
                   ELSE 'connected' END,
              current_date, now()
       FROM feed_connection c JOIN bank_account a ON a.business_id = c.business_id""",
    # What the projector writes, for all but the first PROJECTED businesses.
    """INSERT INTO feed_state (business_id, feed_version, action, connection_status, connection_created_at,
                               needs_action, broken, stalled, held_count, failed_count, snapshot, updated_at)
       SELECT id, 1, action, 'Linked', now(), action <> 'none', action = 'reconnect', false, 0, 0, '{}',
              now()
       FROM (SELECT id, CASE WHEN substr(id, 5)::int % 100 = 0 THEN 'reconnect'
                             WHEN substr(id, 5)::int % 50 = 25 THEN 'finish_in_quickbooks'
                             ELSE 'none' END AS action
             FROM business WHERE substr(id, 5)::int > 200) seeded""",
]
PROJECTED = 200


def expected_needing_action() -> list[str]:
    return [f"biz-{i:05d}" for i in range(1, BUSINESSES + 1) if i % 100 == 0 or i % 50 == 25]


def walk(base_url: str, health: str) -> tuple[list[str], list[str]]:
    """Every business of the list, page by page; and the cursors met (to load later pages)."""
    seen, cursors, after = [], [], None
    with httpx.Client(base_url=base_url, headers=HEADERS, timeout=30) as http:
        while True:
            page = http.get("/internal/v1/console/feeds", params={"health": health, "after": after or ""})
            page.raise_for_status()
            body = page.json()
            seen += [f["businessId"] for f in body["feeds"]]
            if body["nextCursor"] is None:
                return seen, cursors
            after = body["nextCursor"]
            cursors.append(after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000, help="requests per measured list and load")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4], help="concurrent clients")
    args = parser.parse_args()

    h.header("(7) The console's needs-action list, 10,000 businesses, 1% broken (Postgres)")
    database = h.fresh_database("bench_console")
    for statement in SEED:
        h.sql(database, statement, BUSINESSES) if "$1" in statement else h.sql(database, statement)
    h.sql(database, "ANALYZE")  # as autovacuum would have, after a load like this one
    seconds = asyncio.run(h.project_events(database))
    print(f"projection of {PROJECTED} businesses: {seconds:.1f} s ({PROJECTED / seconds:.0f} a second)\n")
    rows = []
    with h.sandbox() as codat, h.bff(database, codat) as (bff_url, _):
        listed, cursors = walk(bff_url, "needs_action")
        expected = expected_needing_action()
        assert listed == expected, f"needs_action listed {len(listed)}, expected {len(expected)}"
        broken, _ = walk(bff_url, "broken")
        assert broken == [f"biz-{i:05d}" for i in range(100, BUSINESSES + 1, 100)], broken[:5]
        print(
            f"pages: needs_action {len(listed)} businesses in {len(cursors) + 1} pages, "
            f"broken {len(broken)}: "
            "each exactly once, in order, as seeded\n"
        )
        path = "/internal/v1/console/feeds"
        lists = {
            "needs_action, first page": [f"{path}?health=needs_action"],
            "needs_action, later pages": [f"{path}?health=needs_action&after={c}" for c in cursors],
            "broken, first page": [f"{path}?health=broken"],
            "search 'biz-0995'": [f"{path}?health=all&q=biz-0995"],
        }
        rng = random.Random(7)
        for connections in args.connections:
            for name, paths in lists.items():
                requests = [("GET", rng.choice(paths), HEADERS) for _ in range(args.requests)]
                asyncio.run(h.load(bff_url, requests[:100], connections))  # warm-up, not recorded
                before = h.machine_ticks()
                replies = asyncio.run(h.load(bff_url, requests, connections))
                busy, steal = h.machine_use(before, h.machine_ticks())
                assert all(r.status == 200 for r in replies), {r.status for r in replies}
                ms = [r.seconds * 1000 for r in replies]
                p50, p99 = h.percentile(ms, 0.5), h.percentile(ms, 0.99)
                rows.append(
                    [name, connections, len(replies), p50, p99, max(ms), f"{busy:.0%}", f"{steal:.0%}"]
                )
    columns = ["list", "clients", "requests", "p50 ms", "p99 ms", "max ms", "machine busy", "stolen by host"]
    print(h.table(columns, rows))
    print("\nOne uvicorn worker; each client sends one request at a time. Goal: p99 under 100 ms.")


if __name__ == "__main__":
    main()
