"""Each platform's rules, by the platform of the account's current connection: Xero takes a year of history,
Sage, NetSuite, FreeAgent and Exact take any age but nothing older than the newest, and a refusal names the
platform. What the BFF accepts reaches the sandbox, which applies the same platform's rules at push time.

The connection is made by POST /v1/bank-feed/connect, which makes a QuickBooks Online one; each test turns it
into the platform's (at the sandbox and in our table, as a connect naming the platform would have made it)
before the SMB authorizes it in the platform's own way: Codat Link's consent and the mapping API for Xero
and the others Codat maps, the connection id and a one-time code typed into Sage.
"""

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import update

from app.bankfeed.models import FeedConnection
from app.bankfeed.repository import BankFeedRepository
from tests.factories import CODAT_AUTH, register
from tests.transactions.conftest import (
    days,
    eventually,
    ledger,
    listing,
    local_today,
    move_clock_to_utc_hour,
    post,
    transaction,
)
from tests.transactions.test_rules import NOTHING


async def connect_on(client, app, sandbox, user, key: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """biz-1's connection, made on the platform with Codat key `key` (nobody has authorized it yet)."""
    connected = (await client.post("/v1/bank-feed/connect", headers=user)).json()
    connection_id = connected["connectionId"]
    sandbox.connections[connection_id].platform_key = key
    async with app.state.sessionmaker.begin() as session:
        await session.execute(
            update(FeedConnection)
            .where(FeedConnection.codat_connection_id == connection_id)
            .values(platform=key)
        )
        await BankFeedRepository(session).bump_feed_version("biz-1")
    company_id = sandbox.connections[connection_id].company_id
    return {**connected, "path": f"/sandbox/companies/{company_id}/connections/{connection_id}"}


async def authorize_and_map(client, connection: dict[str, Any], account: str) -> None:  # type: ignore[no-untyped-def]
    """Codat Link: the SMB consents at the platform; then the account is mapped to a bank account offered in
    the books, through Codat's mapping API."""
    link = connection["linkUrl"]
    otp = parse_qs(urlsplit(link).query)["otp"][0]
    assert (await client.get(link)).status_code == 200
    consent = await client.post(
        link.replace(f"/start?otp={otp}", "/consent"), data={"otp": otp, "decision": "allow"}
    )
    assert consent.status_code == 303, consent.text
    mapping = connection["path"] + "/bankFeedAccounts/mapping"
    options = {m["sourceAccountId"]: m for m in (await client.get(mapping, headers=CODAT_AUTH)).json()}
    target = options[account]["targetAccountOptions"][0]["id"]
    body = {"sourceAccountId": account, "targetAccountId": target}
    assert (await client.post(mapping, json=body, headers=CODAT_AUTH)).status_code == 200


async def connect_in_sage(client, connection: dict[str, Any], account: str) -> None:  # type: ignore[no-untyped-def]
    """The SMB types the connection id and a one-time code into Sage and picks the account."""
    otp = (await client.post(connection["path"] + "/bankFeeds/otp", headers=CODAT_AUTH)).json()["otp"]
    signed_in = await client.post(
        "/sandbox/sage/sign-in", data={"connectionId": connection["connectionId"], "otp": otp}
    )
    assert signed_in.status_code == 200, signed_in.text
    session = signed_in.text.split('name="session" value="')[1].split('"')[0]
    form = {"session": session, "account": [account], "product": "Sage Accounting"}
    assert (await client.post("/sandbox/sage/accounts", data=form)).status_code == 200


@pytest.fixture
def on_platform(client, app, sandbox, service_headers, user_headers):  # type: ignore[no-untyped-def]
    """`await on_platform(key)`: biz-1 (America/New_York) with acc-1 connected on that platform, acc-2 not."""

    async def make(key: str) -> dict[str, Any]:
        move_clock_to_utc_hour(sandbox, 17)  # noon in New York; already tomorrow on Earth's earliest clocks
        await register(client, service_headers(), "biz-1")
        user = user_headers("biz-1")
        connection = await connect_on(client, app, sandbox, user, key)
        if key == "olpr":
            await connect_in_sage(client, connection, "acc-1")
        else:
            await authorize_and_map(client, connection, "acc-1")

        async def acc_1_connected() -> bool:
            view = (await client.post("/v1/bank-feed/refresh", headers=user)).json()
            return view["connectedCount"] == 1

        assert await eventually(acc_1_connected)  # a mapping turns connected on the sandbox's next turn
        latest_today = (sandbox.clock.now() + timedelta(hours=14)).date()  # the latest date on Earth
        return {
            "connection_id": connection["connectionId"],
            "today": local_today(sandbox),
            "latest_today": latest_today,
        }

    return make


async def refusals(client, headers, transactions, account="acc-1") -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(field, reason) of each refusal; asserts that nothing was stored."""
    before = (await listing(client, headers, account))["counts"]
    response = await post(client, headers, transactions, account)
    body = response.json()
    assert response.status_code == 422, body
    assert body["error"] == "transactions_refused"
    assert (await listing(client, headers, account))["counts"] == before
    return [(f["field"], f["reason"]) for f in body["fields"]]


async def delivered(client, headers, sandbox, connection_id: str, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    """The worker delivered exactly these transactions, and the platform's account (the sandbox) has them."""

    async def done() -> bool:
        page = await listing(client, headers)
        return page["counts"]["delivered"] == len(ids)

    assert await eventually(done), await listing(client, headers)
    assert ledger(sandbox, connection_id) == ids
    assert all(o.status == "Success" for o in sandbox.push_operations.values())


class TestXero:
    async def test_a_transaction_a_year_and_a_day_old_is_refused_naming_xeros_year(
        self, client, tx_headers, on_platform, sandbox, worker
    ):
        feed = await on_platform("gbol")
        today, earliest = feed["today"], feed["latest_today"] - days(365)
        worker()

        [(field, reason)] = await refusals(client, tx_headers, [transaction("t-old", today - days(366))])

        assert field == "transactions.0.date"
        assert reason == (
            "before_earliest_date: Xero takes transactions up to 365 days old, from today at UTC+14: "
            f"{today - days(366)}T00:00:00 is before {earliest}, the earliest date this account takes now"
        )
        assert (await listing(client, tx_headers))["counts"] == NOTHING
        # Nothing went to Codat: what the worker sends next is the only push the sandbox ever saw.
        assert (await post(client, tx_headers, [transaction("t-ok", today)])).status_code == 202
        await delivered(client, tx_headers, sandbox, feed["connection_id"], ["t-ok"])
        assert len(sandbox.push_operations) == 1

    async def test_up_to_a_year_old_is_accepted_and_reaches_xero_with_no_yesterday_limit(
        self, client, tx_headers, on_platform, sandbox, worker
    ):
        feed = await on_platform("gbol")
        today = feed["today"]

        first = await post(client, tx_headers, [transaction("t1", today - days(300))])
        # QuickBooks would refuse this second write (before yesterday); Xero takes it.
        second = await post(
            client, tx_headers, [transaction("t2", today - days(200)), transaction("t3", today)]
        )

        assert (first.status_code, second.status_code) == (202, 202)
        worker()
        await delivered(client, tx_headers, sandbox, feed["connection_id"], ["t1", "t2", "t3"])

    async def test_the_year_counts_from_today_at_utc_plus_14_so_codat_never_finds_a_day_too_many(
        self, client, tx_headers, on_platform, sandbox, worker
    ):
        feed = await on_platform("gbol")
        today, latest_today = feed["today"], feed["latest_today"]
        assert latest_today == today + days(1)  # noon in New York is tomorrow already at UTC+14
        assert (await listing(client, tx_headers))["acceptsFrom"] == str(latest_today - days(365))

        # 365 days before New York's today is 366 before UTC+14's: refused now, not by Codat after a 202.
        edge = await refusals(client, tx_headers, [transaction("edge", today - days(365))])
        accepted = await post(client, tx_headers, [transaction("t1", latest_today - days(365))])

        assert [(field, reason.split(":")[0]) for field, reason in edge] == [
            ("transactions.0.date", "before_earliest_date")
        ]
        assert accepted.status_code == 202
        worker()
        await delivered(client, tx_headers, sandbox, feed["connection_id"], ["t1"])

    async def test_older_than_the_newest_and_future_dates_are_refused_too(
        self, client, tx_headers, on_platform
    ):
        today = (await on_platform("gbol"))["today"]
        assert (await post(client, tx_headers, [transaction("t1", today - days(10))])).status_code == 202

        found = await refusals(
            client, tx_headers, [transaction("t2", today - days(11)), transaction("t3", today + days(1))]
        )

        assert [(field, reason.split(":")[0]) for field, reason in found] == [
            ("transactions.0.date", "older_than_newest"),
            ("transactions.1.date", "future_date"),
        ]

    async def test_an_account_not_mapped_yet_is_refused_naming_xero(self, client, tx_headers, on_platform):
        today = (await on_platform("gbol"))["today"]

        response = await post(client, tx_headers, [transaction("t1", today)], account="acc-2")

        assert (response.status_code, response.json()["error"]) == (409, "account_not_connected")
        assert "in Xero" in response.json()["detail"]
        assert "QuickBooks" not in response.text

    async def test_a_disconnect_holds_naming_xero_without_quickbooks_disconnect_lag_warnings(
        self, client, tx_headers, user_headers, on_platform, sandbox, worker
    ):
        feed = await on_platform("gbol")
        assert (await post(client, tx_headers, [transaction("t1", feed["today"])])).status_code == 202
        worker()
        await delivered(client, tx_headers, sandbox, feed["connection_id"], ["t1"])

        done = await client.post(
            f"/sandbox/_sandbox/connections/{feed['connection_id']}/accounts/acc-1/disconnect"
        )
        assert done.status_code == 200
        await client.post("/v1/bank-feed/refresh", headers=user_headers("biz-1"))

        page = await listing(client, tx_headers)
        assert page["held"] == {
            "reason": "account_disconnected",
            "message": "The account was disconnected in Xero: reconnect to resume.",
        }
        # The 10-day lag before Codat reports a disconnect is QuickBooks's: nothing here is at risk.
        assert [(t["status"], t["warning"]) for t in page["transactions"]] == [("delivered", None)]


class TestSage:
    async def test_any_age_is_accepted_and_reaches_sage(
        self, client, tx_headers, on_platform, sandbox, worker
    ):
        feed = await on_platform("olpr")
        today = feed["today"]
        assert (await listing(client, tx_headers))["acceptsFrom"] is None

        response = await post(
            client, tx_headers, [transaction("t1", today - days(800)), transaction("t2", today)]
        )

        assert response.status_code == 202, response.text
        worker()
        await delivered(client, tx_headers, sandbox, feed["connection_id"], ["t1", "t2"])

    async def test_older_than_the_newest_is_refused(self, client, tx_headers, on_platform):
        today = (await on_platform("olpr"))["today"]
        assert (await post(client, tx_headers, [transaction("t1", today)])).status_code == 202

        [(field, reason)] = await refusals(client, tx_headers, [transaction("t2", today - days(1))])

        assert (field, reason.split(":")[0]) == ("transactions.0.date", "older_than_newest")
        assert "QuickBooks" not in reason


@pytest.mark.parametrize("key", ["akxx", "fbrh", "qudb"])
async def test_netsuite_freeagent_and_exact_have_no_window_but_the_newest(
    client, tx_headers, on_platform, sandbox, worker, key
):
    feed = await on_platform(key)
    today = feed["today"]
    assert (await listing(client, tx_headers))["acceptsFrom"] is None
    assert (await post(client, tx_headers, [transaction("t1", today - days(500))])).status_code == 202

    assert [f for f, _ in await refusals(client, tx_headers, [transaction("t0", today - days(501))])] == [
        "transactions.0.date"
    ]
    worker()
    await delivered(client, tx_headers, sandbox, feed["connection_id"], ["t1"])
