"""The seed page, end to end: internal registration, the user's connect, the SMB in Codat's Link page and in
QuickBooks, then what the apps see; rename, add an account, and a lapsed link under a burst of requests."""

import asyncio
from datetime import timedelta

from tests.factories import ACCOUNTS, codat_accounts, connect_in_quickbooks, otp_of, register


async def test_the_seed_flow_from_registration_to_connected_accounts(
    client, service_headers, user_headers, sandbox
):
    await register(client, service_headers(), "biz-e2e")
    user = user_headers("biz-e2e")

    connected = (await client.post("/v1/bank-feed/connect", headers=user)).json()
    # QuickBooks takes a feed start date up to 7 days back.
    start = str(sandbox.clock.now().date() - timedelta(days=5))
    await connect_in_quickbooks(client, connected["linkUrl"], ["acc-1", "acc-2"], feed_start=start)
    view = (await client.post("/v1/bank-feed/refresh", headers=user)).json()

    assert view["connection"]["status"] == "Linked"
    assert view["connectedCount"] == 2
    statuses = {a["accountId"]: (a["status"], a["feedStartDate"]) for a in view["accounts"]}
    assert statuses == {
        "acc-1": ("connected", start),
        "acc-2": ("connected", start),
        "acc-3": ("pending", None),
    }
    assert view["action"] == "finish_in_quickbooks"
    assert view["stateConfirmedAt"] is not None

    renamed = await client.patch(
        "/v1/bank-feed/accounts/acc-1", json={"accountName": "Payroll"}, headers=user
    )
    assert renamed.json()["accountName"] == "Payroll"
    assert (await codat_accounts(client, connected["connectionId"]))["acc-1"]["accountName"] == "Payroll"

    await client.put(
        "/internal/v1/businesses/biz-e2e/accounts/acc-4", json=ACCOUNTS["acc-2"], headers=service_headers()
    )
    added = (await client.post("/v1/bank-feed/accounts", json={"accountIds": ["acc-4"]}, headers=user)).json()
    assert added["connectionId"] == connected["connectionId"]
    assert {a["accountId"]: a["status"] for a in added["accounts"]}["acc-4"] == "pending"
    assert "acc-4" in await codat_accounts(client, connected["connectionId"])

    sandbox.clock.advance(3600)
    reads_before = sandbox.counters["get-connection"]
    links = await asyncio.gather(*(client.get("/v1/bank-feed/link", headers=user) for _ in range(50)))

    assert {r.status_code for r in links} == {200}
    assert len({r.json()["linkUrl"] for r in links}) == 1
    assert otp_of(links[0].json()["linkUrl"]) != otp_of(connected["linkUrl"])
    assert sandbox.counters["get-connection"] - reads_before == 1
