"""End to end through the BFF, with the sandbox behaving as Codat documents and its webhooks delivered to the
BFF over HTTP: a feed that dies (deauthorized, credentials revoked, disconnected in QuickBooks) holds the
account's transactions, nothing is pushed meanwhile (the sandbox's counters), and once it is mended they
reach QuickBooks in order, exactly once."""

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from prometheus_client import REGISTRY

from app.transactions.worker import TransactionWorker
from tests.factories import connect_in_quickbooks, register
from tests.transactions.conftest import (
    eventually,
    ledger,
    listing,
    local_today,
    move_clock_to_utc_hour,
    post,
    transaction,
)

DAY = 86400
PUSHES = "create-bank-transactions"


async def bank_feed(client: httpx.AsyncClient, user: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/v1/bank-feed", headers=user)
    assert response.status_code == 200, response.text
    return dict(response.json())


def account(view: dict[str, Any], account_id: str = "acc-1") -> dict[str, Any]:
    return next(a for a in view["accounts"] if a["accountId"] == account_id)


async def all_delivered(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        page = await listing(client, headers)
        return page if page["counts"]["delivered"] == count else None

    page = await eventually(done)
    assert page, await listing(client, headers)
    return page


async def held(client: httpx.AsyncClient, headers: dict[str, str], reason: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        page = await listing(client, headers)
        held_ones = [t for t in page["transactions"] if t["status"] == "held"]
        return page if page["held"] and page["held"]["reason"] == reason and held_ones else None

    page = await eventually(check)
    assert page, await listing(client, headers)
    return page


async def view_until(client: httpx.AsyncClient, user: dict[str, str], check: Any) -> dict[str, Any]:
    """The view once `check(view)` holds (a webhook is on its way), or the last one seen."""

    async def seen() -> dict[str, Any] | None:
        view = await bank_feed(client, user)
        return view if check(view) else None

    return await eventually(seen) or await bank_feed(client, user)


async def connect(client, service_headers, user_headers, sandbox) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """biz-1 with acc-1 and acc-2 connected in QuickBooks, the feed starting today; the SMB's credentials."""
    move_clock_to_utc_hour(sandbox, 17)
    await register(client, service_headers(), "biz-1")
    user = user_headers("biz-1")
    connected = (await client.post("/v1/bank-feed/connect", headers=user)).json()
    today = local_today(sandbox)
    credentials = await connect_in_quickbooks(client, connected["linkUrl"], ["acc-1", "acc-2"], str(today))
    view = await view_until(client, user, lambda v: v["connectedCount"] == 2)
    assert view["connectedCount"] == 2, view
    return {
        "user": user,
        "connection_id": connected["connectionId"],
        "today": today,
        "credentials": credentials,
    }


async def back_fill_on_the_first_write(client, tx_headers, feed, sandbox) -> list[str]:  # type: ignore[no-untyped-def]
    """Codat's recommended first write: 7 days of history before the feed start date, then today."""
    page = await listing(client, tx_headers)
    assert page["acceptsFrom"] == str(feed["today"] - timedelta(days=7))
    history = [transaction(f"h{n}", feed["today"] - timedelta(days=7 - n)) for n in range(8)]
    assert (await post(client, tx_headers, history)).status_code == 202
    await all_delivered(client, tx_headers, 8)
    assert ledger(sandbox, feed["connection_id"]) == [f"h{n}" for n in range(8)]
    assert (await listing(client, tx_headers))["acceptsFrom"] == str(feed["today"] - timedelta(days=1))
    return [f"h{n}" for n in range(8)]


async def held_gauge(app) -> float | None:  # type: ignore[no-untyped-def]
    """bff_transactions_held as a worker counts it (each worker does, every held_gauge_seconds)."""
    await TransactionWorker(app.state.sessionmaker, app.state.codat, app.state.clock).report_held()
    return REGISTRY.get_sample_value("bff_transactions_held")


async def test_deauthorized_holds_then_reconnect_delivers_in_order_once(
    app, client, live_url, service_headers, user_headers, tx_headers, sandbox, worker
):
    feed = await connect(client, service_headers, user_headers, sandbox)
    worker()
    history = await back_fill_on_the_first_write(client, tx_headers, feed, sandbox)

    await client.post(
        f"/sandbox/_sandbox/connections/{feed['connection_id']}/status", json={"status": "Deauthorized"}
    )
    broken = await view_until(client, feed["user"], lambda v: v["connection"]["status"] == "Deauthorized")
    pushes_before = sandbox.counters[PUSHES]
    late = [transaction(f"n{n}", feed["today"], amount=f"{n + 1}.00") for n in range(3)]
    assert (await post(client, tx_headers, late)).status_code == 202

    page = await held(client, tx_headers, "connection_deauthorized")
    await asyncio.sleep(0.5)  # the worker looks at the account several times meanwhile
    assert sandbox.counters[PUSHES] == pushes_before  # nothing pushed
    assert [t["status"] for t in (await listing(client, tx_headers))["transactions"][-3:]] == ["held"] * 3
    assert page["counts"]["held"] == 3
    assert await held_gauge(app) == 3  # what the operator sees
    assert (broken["action"], account(broken)["writesHeld"]) == (
        "reconnect",
        "Codat lost access to QuickBooks Online (Deauthorized): reconnect to resume.",
    )

    mended = (await client.post("/v1/bank-feed/reconnect", headers=feed["user"])).json()
    assert mended["connectionId"] != feed["connection_id"]  # Codat's dead connection is not revived
    await connect_in_quickbooks(client, mended["linkUrl"], ["acc-1", "acc-2"], str(feed["today"]))

    page = await all_delivered(client, tx_headers, 11)
    assert page["held"] is None
    assert ledger(sandbox, mended["connectionId"]) == ["n0", "n1", "n2"]  # in order
    everywhere = [
        t["id"] for (_, acc), rows in sandbox.bank_transactions.items() if acc == "acc-1" for t in rows
    ]
    assert sorted(everywhere) == sorted(history + ["n0", "n1", "n2"])  # each exactly once
    assert account(await bank_feed(client, feed["user"]))["writesHeld"] is None
    assert await held_gauge(app) == 0


async def test_revoked_credentials_hold_until_new_ones_are_used(
    client, live_url, service_headers, user_headers, tx_headers, sandbox, worker
):
    feed = await connect(client, service_headers, user_headers, sandbox)
    worker()
    history = await back_fill_on_the_first_write(client, tx_headers, feed, sandbox)

    revoked = await client.delete("/v1/bank-feed/credentials", headers=feed["user"])
    assert revoked.status_code == 204, revoked.text
    pushes_before = sandbox.counters[PUSHES]
    assert (await post(client, tx_headers, [transaction("n0", feed["today"])])).status_code == 202

    await held(client, tx_headers, "credentials_revoked")
    await asyncio.sleep(0.5)
    assert sandbox.counters[PUSHES] == pushes_before
    view = await bank_feed(client, feed["user"])
    assert view["action"] == "reconnect"
    assert "credentials were revoked" in account(view)["writesHeld"]

    # The user gets new one-time credentials and links the account again with them in QuickBooks.
    fresh = (await client.post("/v1/bank-feed/credentials", headers=feed["user"])).json()
    relinked = await client.post(
        "/sandbox/qbo/connect",
        data={**fresh, "account": ["acc-1"], "feedStartDate": str(feed["today"])},
    )
    assert relinked.status_code == 200, relinked.text

    await all_delivered(client, tx_headers, 9)
    assert ledger(sandbox, feed["connection_id"]) == [*history, "n0"]


async def test_a_quickbooks_disconnect_seen_by_codat_10_days_later(
    client, live_url, service_headers, user_headers, tx_headers, sandbox, worker
):
    feed = await connect(client, service_headers, user_headers, sandbox)
    worker()
    assert (await post(client, tx_headers, [transaction("d0", feed["today"])])).status_code == 202
    await all_delivered(client, tx_headers, 1)

    # Day 0: the SMB disconnects acc-1 in QuickBooks. Codat, and so the view, still say connected.
    username, password = feed["credentials"]
    form = {"username": username, "password": password, "account": "acc-1"}
    await client.post("/sandbox/qbo/disconnect", data=form)
    day0 = account(await bank_feed(client, feed["user"]))
    assert (day0["status"], day0["writesHeld"]) == ("connected", None)

    # Day 5: a transaction is sent; Codat takes it (Success), but QuickBooks no longer pulls the feed.
    await client.post("/sandbox/_sandbox/clock/advance", json={"seconds": 5 * DAY})
    assert (await post(client, tx_headers, [transaction("d5", local_today(sandbox))])).status_code == 202
    await all_delivered(client, tx_headers, 2)
    assert ledger(sandbox, feed["connection_id"]) == ["d0"]
    assert [t["id"] for t in sandbox.stranded[(feed["connection_id"], "acc-1")]] == ["d5"]

    # Day 9: asked again, Codat still confirms connected; the view says when it last did.
    await client.post("/sandbox/_sandbox/clock/advance", json={"seconds": 4 * DAY})
    day9 = account((await client.post("/v1/bank-feed/refresh", headers=feed["user"])).json())
    assert day9["status"] == "connected"
    assert day9["statusConfirmedAt"] > day0["statusConfirmedAt"]

    # Day 10: Codat reports the disconnect (webhook); the view asks for a reconnect; new ones are held.
    await client.post("/sandbox/_sandbox/clock/advance", json={"seconds": DAY})
    day10 = await view_until(client, feed["user"], lambda v: account(v)["status"] == "disconnected")
    assert (account(day10)["status"], day10["action"]) == ("disconnected", "reconnect")
    assert (
        account(day10)["writesHeld"]
        == "The account was disconnected in QuickBooks Online: reconnect to resume."
    )
    pushes_before = sandbox.counters[PUSHES]
    assert (await post(client, tx_headers, [transaction("d10", local_today(sandbox))])).status_code == 202
    page = await held(client, tx_headers, "account_disconnected")
    await asyncio.sleep(0.5)
    assert sandbox.counters[PUSHES] == pushes_before
    statuses = {t["id"]: (t["status"], t["warning"] is not None) for t in page["transactions"]}
    # d5 was delivered (Codat took it) inside the lag: the BFF cannot know whether QuickBooks pulled it
    # (the sandbox says it did not), and says so; d0, delivered before the lag's window, is not in doubt.
    assert statuses == {"d0": ("delivered", False), "d5": ("delivered", True), "d10": ("held", False)}
