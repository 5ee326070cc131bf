"""Every bank-feed target end to end through the BFF and the embedded sandbox: connect with the platform,
the SMB authorizes at the platform's own pages, accounts mapped through our mapping endpoints where Codat maps
them, a back-fill delivered by the worker, a disconnect that holds new transactions, a reconnect that
delivers them on the new connection. Every transaction reaches the platform exactly once, and the view says
what to do at every step. Webhooks reach the BFF over HTTP (`live_url`), as Codat's would."""

from datetime import date
from typing import Any

import httpx
import pytest

from tests.factories import connect_in_quickbooks, register
from tests.targets import (
    MAPPING_PLATFORMS,
    PLATFORMS,
    allow_access,
    choose_in_sage,
    confirm_in_sage,
    sign_in_to_sage,
)
from tests.transactions.conftest import (  # noqa: F401 - the worker fixture
    days,
    eventually,
    ledger,
    local_today,
    move_clock_to_utc_hour,
    transaction,
    worker,
)

BUSINESS = "biz-targets"
ACCOUNT = {
    "name": "Operating checking",
    "accountType": "checking",
    "accountNumber": "000123456789",
    "routingNumber": "021000021",
    "currency": "USD",
    "balance": "4002.00",
}
FIRST_ACTION = {"quickbooks-online": "finish_in_quickbooks", "sage": "enter_code_in_sage"}


class Trip:
    """One SMB's way through the BFF to one platform; asserts the view's action as it goes."""

    def __init__(self, client: httpx.AsyncClient, user: dict[str, str], platform: str, today: date) -> None:
        self.client, self.user, self.platform, self.today = client, user, platform, today

    async def view(self) -> dict[str, Any]:
        return (await self.client.get("/v1/bank-feed", headers=self.user)).json()

    async def action_becomes(self, action: str, status: str | None = None) -> dict[str, Any]:
        """The view once webhooks brought it to `action` (and acc-1 to `status`)."""

        async def reached() -> dict[str, Any] | None:
            view = await self.view()
            statuses = [a["status"] for a in view["accounts"]]
            return view if view["action"] == action and status in (None, *statuses) else None

        view = await eventually(reached)
        assert view, f"the view never reached {action} ({status}): {await self.view()}"
        return view

    async def onboard(self, out: dict[str, Any]) -> None:
        """From ConnectOut to acc-1 connected, the way the platform's flow goes."""
        assert out["platform"] == self.platform
        assert out["action"] == FIRST_ACTION.get(self.platform, "authorize")
        if self.platform == "quickbooks-online":
            start = str(self.today - days(5))
            await connect_in_quickbooks(self.client, out["linkUrl"], ["acc-1"], feed_start=start)
        elif self.platform == "sage":
            await self.onboard_in_sage(out)
        else:
            await allow_access(self.client, out["linkUrl"])
            await self.map_through_bff()
        await self.action_becomes("none", "connected")

    async def onboard_in_sage(self, out: dict[str, Any]) -> None:
        assert out["linkUrl"] is None
        assert out["sageCode"]["connectionId"] == out["connectionId"]
        session = await sign_in_to_sage(self.client, out["sageCode"])
        await choose_in_sage(self.client, session, ["acc-1"], product="Sage 50")
        await self.action_becomes("confirm_in_sage")
        await confirm_in_sage(self.client, session, "acc-1")

    async def map_through_bff(self) -> None:
        await self.action_becomes("map_accounts")
        mapping = await self.client.get("/v1/bank-feed/mapping", headers=self.user)
        assert mapping.status_code == 200, mapping.text
        assert mapping.headers["cache-control"] == "no-store"
        [account] = mapping.json()["accounts"]
        assert (account["accountId"], account["status"], account["targetAccount"]) == (
            "acc-1",
            "pending",
            None,
        )
        target = account["options"][0]
        body = {"targetAccountId": target["id"], "feedStartDate": str(self.today - days(5))}
        mapped = await self.client.post("/v1/bank-feed/accounts/acc-1/mapping", json=body, headers=self.user)
        assert mapped.status_code == 200, mapped.text
        assert mapped.json()["targetAccount"] == {"id": target["id"], "name": target["name"]}
        assert mapped.json()["status"] in ("connecting", "connected")

    async def push(self, tx_headers: dict[str, str], transactions: list[dict[str, Any]]) -> None:
        response = await self.client.post(
            f"/internal/v1/businesses/{BUSINESS}/accounts/acc-1/transactions",
            json={"transactions": transactions},
            headers=tx_headers,
        )
        assert response.status_code == 202, response.text


async def delivered(sandbox: Any, connection_id: str, count: int) -> list[str]:
    async def arrived() -> list[str] | None:
        ids = ledger(sandbox, connection_id)
        return ids if len(ids) >= count else None

    return await eventually(arrived) or ledger(sandbox, connection_id)


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_each_target_from_connect_to_reconnect_delivers_every_transaction_once(
    platform,
    client,
    service_headers,
    user_headers,
    sandbox,
    live_url,
    worker,  # noqa: F811 - the fixture imported above
):
    move_clock_to_utc_hour(sandbox, 17)
    await register(client, service_headers(), BUSINESS, accounts={"acc-1": ACCOUNT})
    user, tx_headers = user_headers(BUSINESS), service_headers("transactions:write")
    trip = Trip(client, user, platform, local_today(sandbox))
    worker()

    first = await client.post("/v1/bank-feed/connect", json={"platform": platform}, headers=user)
    assert first.status_code == 200, first.text
    await trip.onboard(first.json())
    # A back-fill within every platform's window: QuickBooks' first write goes 7 days before the feed start.
    backfill = [transaction(f"b{n}", trip.today - days(4 - n), balance=str(n)) for n in range(5)]
    await trip.push(tx_headers, backfill)
    old = first.json()["connectionId"]
    assert await delivered(sandbox, old, 5) == ["b0", "b1", "b2", "b3", "b4"]

    stopped = await client.post("/v1/bank-feed/disconnect", headers=user)
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["action"], stopped.json()["connection"]["status"]) == ("reconnect", "Unlinked")
    await trip.push(tx_headers, [transaction("held", trip.today)])

    again = await client.post("/v1/bank-feed/reconnect", headers=user)
    assert again.status_code == 200, again.text
    assert again.json()["connectionId"] != old
    await trip.onboard(again.json())
    new = again.json()["connectionId"]
    assert await delivered(sandbox, new, 1) == ["held"]
    assert ledger(sandbox, old) == ["b0", "b1", "b2", "b3", "b4"]


@pytest.mark.parametrize("platform", MAPPING_PLATFORMS)
async def test_the_source_account_waits_for_mapping_once_the_platform_is_allowed(
    platform, client, service_headers, user_headers, sandbox
):
    await register(client, service_headers(), BUSINESS, accounts={"acc-1": ACCOUNT})
    user = user_headers(BUSINESS)
    out = (await client.post("/v1/bank-feed/connect", json={"platform": platform}, headers=user)).json()
    await allow_access(client, out["linkUrl"])

    view = (await client.post("/v1/bank-feed/refresh", headers=user)).json()

    assert (view["connection"]["status"], view["accounts"][0]["status"]) == ("Linked", "pending")
    assert (view["action"], view["actionEndpoint"]) == ("map_accounts", "GET /v1/bank-feed/mapping")
