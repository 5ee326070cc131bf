"""Broken feeds: the view says so, and one call mends them."""

from sqlalchemy import select

from app.bankfeed.models import FeedConnection
from tests.factories import ACCOUNTS, codat_accounts, connect_in_quickbooks, disconnect_in_quickbooks


async def view(client, headers) -> dict:  # type: ignore[no-untyped-def]
    return (await client.post("/v1/bank-feed/refresh", headers=headers)).json()


class TestDisconnectedAccount:
    async def test_disconnect_in_quickbooks_then_reconnect_in_one_step(self, client, user_headers, business):
        user = user_headers(business)
        connected = (await client.post("/v1/bank-feed/connect", headers=user)).json()
        credentials = await connect_in_quickbooks(client, connected["linkUrl"], sorted(ACCOUNTS))
        assert (await view(client, user))["action"] == "none"

        await disconnect_in_quickbooks(client, credentials, "acc-1")
        broken = await view(client, user)
        mended = (await client.post("/v1/bank-feed/reconnect", headers=user)).json()
        await connect_in_quickbooks(client, mended["linkUrl"], ["acc-1"])
        healed = await view(client, user)

        assert broken["action"] == "reconnect"
        assert broken["actionMessage"]
        assert {a["accountId"]: a["status"] for a in broken["accounts"]}["acc-1"] == "disconnected"
        assert mended["connectionId"] == connected["connectionId"]  # the connection is still usable
        assert healed["action"] == "none"
        assert healed["actionMessage"] is None
        assert [a["status"] for a in healed["accounts"]] == ["connected"] * 3

    async def test_reconnect_can_hand_out_credentials_for_an_in_app_flow(
        self, client, user_headers, business
    ):
        await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        response = await client.post(
            "/v1/bank-feed/reconnect", json={"withCredentials": True}, headers=user_headers(business)
        )

        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["credentials"]["username"]


class TestDeadConnection:
    async def test_a_deauthorized_connection_is_replaced_once_with_the_same_accounts(
        self, app, client, user_headers, business, sandbox
    ):
        user = user_headers(business)
        old = (await client.post("/v1/bank-feed/connect", headers=user)).json()
        await client.post(
            f"/sandbox/_sandbox/connections/{old['connectionId']}/status", json={"status": "Deauthorized"}
        )

        first = (await client.post("/v1/bank-feed/reconnect", headers=user)).json()
        second = (await client.post("/v1/bank-feed/reconnect", headers=user)).json()

        assert first["connectionId"] != old["connectionId"]
        assert second["connectionId"] == first["connectionId"]
        assert sandbox.counters["create-connection"] == 2
        assert sorted(await codat_accounts(client, first["connectionId"])) == sorted(ACCOUNTS)
        async with app.state.sessionmaker() as session:
            history = {
                c.codat_connection_id: (c.is_current, c.status)
                for c in (await session.scalars(select(FeedConnection))).all()
            }
        assert history == {
            old["connectionId"]: (False, "Deauthorized"),
            first["connectionId"]: (True, "PendingAuth"),
        }

    async def test_the_view_says_reconnect_when_all_accounts_were_disconnected_and_codat_unlinked(
        self, client, user_headers, business
    ):
        user = user_headers(business)
        connected = (await client.post("/v1/bank-feed/connect", headers=user)).json()
        credentials = await connect_in_quickbooks(client, connected["linkUrl"], sorted(ACCOUNTS))
        for account_id in sorted(ACCOUNTS):
            await disconnect_in_quickbooks(client, credentials, account_id)
        # Codat unlinks the connection up to a day after its last account shows disconnected.
        await client.post("/sandbox/_sandbox/clock/advance", json={"seconds": 86400})

        broken = await view(client, user)
        mended = (await client.post("/v1/bank-feed/reconnect", headers=user)).json()

        assert (broken["connection"]["status"], broken["action"]) == ("Unlinked", "reconnect")
        assert mended["connectionId"] != connected["connectionId"]
        assert [a["status"] for a in mended["accounts"]] == ["pending"] * 3
