"""The nine behaviours Codat documents that the sandbox must show (app/sandbox/README.md keeps the table of
sources): each test drives the sandbox the way a client of Codat would and checks what Codat says happens."""

import asyncio
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from codat_bankfeeds import CodatBankFeeds
from codat_bankfeeds.models import errors, shared
from codat_bankfeeds.utils import RetryConfig

from app.sandbox import SandboxConfig
from tests.contract import validate_webhook
from tests.sandbox.support import Sandbox, assert_codat_error, basic_auth, serve_in_thread

DAY = 86400


def events(sandbox: Sandbox, event_type: str) -> list[dict[str, Any]]:
    """The events of a type the sandbox sent, each checked against Codat's webhook schemas."""
    found = [json.loads(d.body) for d in sandbox.state.webhooks.deliveries if d.event_type == event_type]
    for event in found:
        validate_webhook(event)
    return found


async def advance(sandbox: Sandbox, seconds: float) -> None:
    response = await sandbox.client.post("/_sandbox/clock/advance", json={"seconds": seconds})
    assert response.status_code == 200, response.text


async def set_status(sandbox: Sandbox, connection: dict[str, Any], status: str) -> None:
    path = f"/_sandbox/connections/{connection['id']}/status"
    assert (await sandbox.client.post(path, json={"status": status})).status_code == 200


async def read_connection(sandbox: Sandbox, connection: dict[str, Any]) -> dict[str, Any]:
    response = await sandbox.client.get(
        f"/companies/{connection['companyId']}/connections/{connection['id']}"
    )
    return dict(response.json())


def today(sandbox: Sandbox) -> date:
    return sandbox.state.clock.now().date()


async def credentials(sandbox: Sandbox, connection: dict[str, Any]) -> dict[str, str]:
    path = Sandbox.accounts_path(connection) + "/credentials"
    response = await sandbox.client.post(path)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def link(
    sandbox: Sandbox, connection: dict[str, Any], accounts: list[str], start: date | None = None
) -> dict[str, str]:
    """What the SMB does in QuickBooks: sign in with new one-time credentials, pick accounts, Connect."""
    signed_in = await credentials(sandbox, connection)
    form = {**signed_in, "account": accounts, "feedStartDate": str(start or today(sandbox))}
    page = await sandbox.client.post("/qbo/connect", data=form)
    assert page.status_code == 200, page.text
    return signed_in


@pytest.fixture
async def linked(sandbox: Sandbox) -> dict[str, Any]:
    """A Linked connection with ac-001 connected in QuickBooks (feed starting today) and ac-002 pending."""
    sandbox.state.clock.advance(_seconds_to_noon(sandbox.state.clock.now()))
    connection = await sandbox.connection()
    await sandbox.account(connection, "ac-001")
    await sandbox.account(connection, "ac-002")
    connection["credentials"] = await link(sandbox, connection, ["ac-001"])
    return connection


def _seconds_to_noon(now: datetime) -> float:
    """To the next noon UTC, so that "today" and "yesterday" hold still while a test runs (between 12:00 and
    13:00 the hour alone said this noon, already past: the clock only moves forward)."""
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    return ((noon if noon >= now else noon + timedelta(days=1)) - now).total_seconds()


def transaction(tid: str, when: date, amount: float = 10.0) -> dict[str, Any]:
    kind = "Credit" if amount > 0 else "Debit"
    return {
        "id": tid,
        "date": str(when),
        "description": tid,
        "amount": amount,
        "balance": 100,
        "transactionType": kind,
    }


async def push(  # type: ignore[no-untyped-def]
    sandbox: Sandbox, connection: dict[str, Any], transactions: list[dict[str, Any]], **query: Any
):
    connection_path = f"/companies/{connection['companyId']}/connections/{connection['id']}"
    path = f"{connection_path}/push/bankAccounts/ac-001/bankTransactions"
    body = {"accountId": "ac-001", "transactions": transactions}
    return await sandbox.client.post(path, json=body, params=query)


async def outcome(sandbox: Sandbox, connection: dict[str, Any], key: str) -> dict[str, Any]:
    await asyncio.sleep(0.01)  # pushCompletionSeconds is 0: the push completes on its timer at once
    response = await sandbox.client.get(f"/companies/{connection['companyId']}/push/{key}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def ledger(sandbox: Sandbox, connection: dict[str, Any], account: str = "ac-001") -> list[str]:
    return [t["id"] for t in sandbox.state.bank_transactions.get((connection["id"], account), [])]


class TestOneNoWriteOnADeadConnection:
    """core-concepts/connections: Unlinked and Deauthorized connections take no new write until re-linked."""

    @pytest.mark.parametrize("status", ["Deauthorized", "Unlinked"])
    async def test_a_push_is_refused_naming_the_connection(self, sandbox, linked, status) -> None:
        await set_status(sandbox, linked, status)

        refused = await push(sandbox, linked, [transaction("t1", today(sandbox))])

        error = assert_codat_error(refused, 400, "connectionId")
        assert status in error["error"]
        assert ledger(sandbox, linked) == []

    async def test_a_push_pending_when_the_connection_dies_fails(self, sandbox, linked) -> None:
        sandbox.state.set_knobs(pushCompletionSeconds=0.05)
        key = (await push(sandbox, linked, [transaction("t1", today(sandbox))])).json()["pushOperationKey"]
        await set_status(sandbox, linked, "Deauthorized")
        await asyncio.sleep(0.1)

        done = await outcome(sandbox, linked, key)
        assert (done["status"], done["validation"]["errors"][0]["itemId"]) == ("Failed", "connectionId")
        assert ledger(sandbox, linked) == []

    async def test_reading_what_was_written_still_works(self, sandbox, linked) -> None:
        await set_status(sandbox, linked, "Unlinked")
        assert (await sandbox.client.get(Sandbox.accounts_path(linked))).status_code == 200


class TestTwoRevokedCredentials:
    """qbo-bank-feeds-smb-user: revoking credentials stops writes from the accounts linked with them."""

    async def test_writes_stop_until_the_account_is_linked_with_new_ones(self, sandbox, linked) -> None:
        revoked = await sandbox.client.delete(Sandbox.accounts_path(linked) + "/credentials")
        assert revoked.status_code == 204

        assert_codat_error(await push(sandbox, linked, [transaction("t1", today(sandbox))]), 400, "accountId")

        await link(sandbox, linked, ["ac-001"])
        pushed = await push(sandbox, linked, [transaction("t1", today(sandbox))])
        assert (await outcome(sandbox, linked, pushed.json()["pushOperationKey"]))["status"] == "Success"
        # Linking again with new credentials tells the client the account is connected again.
        assert len(events(sandbox, "bankFeeds.sourceAccount.connected")) == 2

    async def test_quickbooks_refuses_revoked_credentials_and_codat_sends_connection_failed(
        self, sandbox, linked
    ) -> None:
        await sandbox.client.delete(Sandbox.accounts_path(linked) + "/credentials")

        page = await sandbox.client.post("/qbo/accounts", data=linked["credentials"])

        assert page.status_code == 401
        [failed] = events(sandbox, "connection.failed")
        [error] = failed["payload"]["connection"]["dataConnectionErrors"]
        assert (error["statusCode"], error["status"]) == ("401", "Active")
        assert "revoked" in error["errorMessage"]


class TestThreeQboWriteWindow:
    """qbo-bank-feeds-push-bank-transactions: today or yesterday; the first write up to 7 days before the feed
    start date (bank-feeds/integrations/qbo/mapping says 90: the historyWindowDays knob)."""

    async def test_the_first_write_takes_7_days_of_history_and_not_8(self, sandbox, linked) -> None:
        start = today(sandbox)
        too_old = await push(sandbox, linked, [transaction("t0", start - timedelta(days=8))])
        assert (await outcome(sandbox, linked, too_old.json()["pushOperationKey"]))["status"] == "Failed"

        history = [transaction(f"t{n}", start - timedelta(days=7 - n)) for n in range(8)]
        pushed = await push(sandbox, linked, history)

        assert (await outcome(sandbox, linked, pushed.json()["pushOperationKey"]))["status"] == "Success"
        assert ledger(sandbox, linked) == [f"t{n}" for n in range(8)]

    async def test_after_the_first_write_only_today_or_yesterday(self, sandbox, linked) -> None:
        first = await push(sandbox, linked, [transaction("t1", today(sandbox) - timedelta(days=5))])
        assert (await outcome(sandbox, linked, first.json()["pushOperationKey"]))["status"] == "Success"

        older = await push(sandbox, linked, [transaction("t2", today(sandbox) - timedelta(days=3))])
        refused = await outcome(sandbox, linked, older.json()["pushOperationKey"])
        assert refused["status"] == "Failed"
        assert "before" in refused["validation"]["errors"][0]["message"]
        recent = await push(sandbox, linked, [transaction("t3", today(sandbox) - timedelta(days=1))])
        assert (await outcome(sandbox, linked, recent.json()["pushOperationKey"]))["status"] == "Success"

    async def test_a_push_dated_two_years_ago_fails(self, sandbox, linked) -> None:
        pushed = await push(sandbox, linked, [transaction("t1", today(sandbox) - timedelta(days=730))])
        assert (await outcome(sandbox, linked, pushed.json()["pushOperationKey"]))["status"] == "Failed"

    async def test_the_90_day_reading_is_a_knob(self, sandbox, linked) -> None:
        sandbox.state.set_knobs(historyWindowDays=90)
        pushed = await push(sandbox, linked, [transaction("t1", today(sandbox) - timedelta(days=60))])
        assert (await outcome(sandbox, linked, pushed.json()["pushOperationKey"]))["status"] == "Success"


class TestFourFeedStartDate:
    """qbo-bank-feeds-smb-user: a feed start date more than 7 days back is ignored."""

    async def test_a_start_date_further_back_becomes_7_days_ago(self, sandbox) -> None:
        connection = await sandbox.connection()
        await sandbox.account(connection, "ac-001")
        await sandbox.account(connection, "ac-002")
        await link(sandbox, connection, ["ac-001"], start=date(2020, 1, 1))
        await link(sandbox, connection, ["ac-002"], start=today(sandbox) - timedelta(days=3))

        starts = {a["id"]: a["feedStartDate"] for a in await sandbox.accounts(connection)}

        assert starts == {
            "ac-001": str(today(sandbox) - timedelta(days=7)),
            "ac-002": str(today(sandbox) - timedelta(days=3)),
        }


class TestFiveDisconnectLag:
    """qbo-bank-feeds: a disconnect in QBO shows as disconnected 10 days later; the connection turns Unlinked
    up to a day after all its accounts are (knobs: disconnectLagSeconds, unlinkLagSeconds)."""

    async def test_codat_shows_it_on_day_10_and_unlinks_a_day_later(self, sandbox, linked) -> None:
        form = {**linked["credentials"], "account": "ac-001"}
        assert (await sandbox.client.post("/qbo/disconnect", data=form)).status_code == 200
        await sandbox.client.delete(Sandbox.accounts_path(linked) + "/ac-002")  # only ac-001 is left

        await advance(sandbox, 9 * DAY)
        assert [a["status"] for a in await sandbox.accounts(linked)] == ["connected"]
        assert events(sandbox, "bankFeeds.sourceAccount.disconnected") == []

        await advance(sandbox, DAY)
        assert [a["status"] for a in await sandbox.accounts(linked)] == ["disconnected"]
        assert len(events(sandbox, "bankFeeds.sourceAccount.disconnected")) == 1
        connection = await read_connection(sandbox, linked)
        assert connection["status"] == "Linked"

        await advance(sandbox, DAY)
        connection = await read_connection(sandbox, linked)
        assert connection["status"] == "Unlinked"
        [disconnected] = events(sandbox, "connection.disconnected")
        assert disconnected["payload"]["connection"]["status"] == "Unlinked"

    async def test_during_the_lag_codat_still_takes_writes(self, sandbox, linked) -> None:
        await sandbox.client.post("/qbo/disconnect", data={**linked["credentials"], "account": "ac-001"})
        await advance(sandbox, 5 * DAY)

        pushed = await push(sandbox, linked, [transaction("t1", today(sandbox))])

        assert (await outcome(sandbox, linked, pushed.json()["pushOperationKey"]))["status"] == "Success"
        # Success at Codat, but QuickBooks no longer pulls the feed: the transaction never reaches it.
        assert ledger(sandbox, linked) == []
        assert [t["id"] for t in sandbox.state.stranded[(linked["id"], "ac-001")]] == ["t1"]
        await advance(sandbox, 5 * DAY)
        assert_codat_error(await push(sandbox, linked, [transaction("t2", today(sandbox))]), 400, "accountId")


class TestSixRateLimits:
    """using-the-api/rate-limits: 1,000 x (1 + ACCs) a day, reset 00:00 UTC; headers on every answer;
    client.rateLimit.reached / .reset."""

    async def test_every_answer_carries_the_quota_headers(self, sandbox, linked) -> None:
        answers = [
            await sandbox.client.get("/companies"),
            await sandbox.client.get("/companies/nope"),
            await push(sandbox, linked, []),
        ]
        assert [a.status_code for a in answers] == [200, 404, 400]
        remaining = [int(a.headers["X-Rate-Limit-Remaining"]) for a in answers]
        assert remaining == [remaining[0], remaining[0] - 1, remaining[0] - 2]
        # One active connected company: 1,000 x (1 + 1).
        assert {a.headers["X-Rate-Limit-Limit"] for a in answers} == {"2000"}
        tomorrow = today(sandbox) + timedelta(days=1)
        assert {a.headers["X-Rate-Limit-Reset"] for a in answers} == {f"{tomorrow}T00:00:00Z"}

    async def test_the_quota_follows_the_active_connected_companies(self, sandbox, linked) -> None:
        async def limit() -> int:
            return int((await sandbox.client.get("/companies")).headers["X-Rate-Limit-Limit"])

        def path(connection: dict[str, Any]) -> str:
            return f"/companies/{connection['companyId']}/connections/{connection['id']}"

        assert await limit() == 2000  # linked in QuickBooks
        second = await sandbox.connection(linked["companyId"])
        await set_status(sandbox, second, "Linked")
        assert await limit() == 2000  # a company counts once, however many Linked connections it has
        other = await sandbox.connection()
        assert await limit() == 2000  # PendingAuth is not active
        await set_status(sandbox, other, "Linked")
        assert await limit() == 3000
        assert (await sandbox.client.patch(path(other), json={"status": "Unlinked"})).status_code == 200
        assert await limit() == 2000
        await set_status(sandbox, other, "Linked")
        assert await limit() == 3000
        assert (await sandbox.client.delete(path(other))).status_code == 200
        assert await limit() == 2000
        assert (await sandbox.client.delete(path(linked))).status_code == 200
        assert await limit() == 2000  # the second connection is still Linked
        assert (await sandbox.client.delete(f"/companies/{linked['companyId']}")).status_code == 204
        assert await limit() == 1000

        await set_status(sandbox, await sandbox.connection(), "Linked")
        assert await limit() == 2000
        assert (await sandbox.client.post("/_sandbox/reset")).status_code == 204
        assert await limit() == 1000

    async def test_the_last_request_sends_reached_and_midnight_sends_reset(self, sandbox) -> None:
        sandbox.state.clock.advance(_seconds_to_noon(sandbox.state.clock.now()))
        sandbox.state.set_knobs(dailyQuota=2)
        assert (await sandbox.client.get("/companies")).status_code == 200
        assert (await sandbox.client.get("/companies")).headers["X-Rate-Limit-Remaining"] == "0"
        [reached] = events(sandbox, "client.rateLimit.reached")
        assert (reached["payload"]["dailyQuota"], reached["payload"]["quotaRemaining"]) == (2, 0)

        over = await sandbox.client.get("/companies")
        assert over.status_code == 429
        assert 12 * 3600 - 60 < int(over.headers["Retry-After"]) <= 12 * 3600  # till 00:00 UTC

        await advance(sandbox, 12 * 3600)
        [reset] = events(sandbox, "client.rateLimit.reset")
        assert reset["payload"]["quotaRemaining"] == 2
        assert (await sandbox.client.get("/companies")).status_code == 200


class TestSevenLifecycleWebhooks:
    """using-the-api/webhooks/event-types: company.created, company.deleted, connection.failed."""

    async def test_creating_and_deleting_a_company_send_their_events(self, sandbox) -> None:
        company = await sandbox.company("Dave's Bakery")
        assert (await sandbox.client.delete(f"/companies/{company['id']}")).status_code == 204

        [created], [deleted] = events(sandbox, "company.created"), events(sandbox, "company.deleted")
        assert created["payload"]["id"] == deleted["payload"]["id"] == company["id"]
        assert created["payload"]["name"] == "Dave's Bakery"

    async def test_a_failed_connection_carries_its_errors(self, sandbox, linked) -> None:
        failed = await sandbox.client.post(
            f"/_sandbox/connections/{linked['id']}/fail",
            json={"statusCode": "403", "message": "Access revoked"},
        )
        assert failed.json()["dataConnectionErrors"][0]["errorMessage"] == "Access revoked"
        [event] = events(sandbox, "connection.failed")
        assert event["payload"]["connection"]["dataConnectionErrors"][0]["statusCode"] == "403"
        assert event["payload"]["referenceCompany"]["id"] == linked["companyId"]


class TestEightPushTimeout:
    """using-the-api/push (Timeouts): a write still Pending after timeoutInMinutes ends TimedOut."""

    async def test_a_pending_push_times_out_on_the_sandbox_clock(self, sandbox, linked) -> None:
        sandbox.state.set_knobs(pushCompletionSeconds=60)
        pushed = await push(sandbox, linked, [transaction("t1", today(sandbox))], timeoutInMinutes=5)
        key = pushed.json()["pushOperationKey"]
        await advance(sandbox, 4 * 60)
        assert (await outcome(sandbox, linked, key))["status"] == "Pending"

        await advance(sandbox, 60)

        done = await outcome(sandbox, linked, key)
        assert (done["status"], done["timeoutInMinutes"]) == ("TimedOut", 5)
        [event] = events(sandbox, "bankTransactions.write.unsuccessful")
        assert event["payload"]["status"] == "TimedOut"
        assert ledger(sandbox, linked) == []

    async def test_a_default_timeout_is_a_knob(self, sandbox, linked) -> None:
        sandbox.state.set_knobs(pushCompletionSeconds=60, defaultPushTimeoutMinutes=1)
        key = (await push(sandbox, linked, [transaction("t1", today(sandbox))])).json()["pushOperationKey"]
        await advance(sandbox, 60)
        assert (await outcome(sandbox, linked, key))["status"] == "TimedOut"


class TestNineQueryAndOrderBy:
    """using-the-api/querying, ordering-results, paging: query and orderBy; totalResults after the filter."""

    async def test_companies_by_name_tag_and_date(self, sandbox) -> None:
        for name, region in (("Acme Bakery", "east"), ("Zed Cafe", "west"), ("Acme Tools", "west")):
            created = await sandbox.client.post("/companies", json={"name": name, "tags": {"region": region}})
            assert created.status_code == 200
            sandbox.state.clock.advance(60)

        async def names(**params: str) -> list[str]:
            response = await sandbox.client.get("/companies", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["totalResults"] == len(page["results"])
            return [c["name"] for c in page["results"]]

        assert await names(query="name~acme") == ["Acme Bakery", "Acme Tools"]
        assert await names(query="name~acme && tags.region=west") == ["Acme Tools"]
        grouped = "{name=Zed Cafe || name=Acme Tools} && tags.region!=east"
        assert await names(query=grouped, orderBy="-name") == ["Zed Cafe", "Acme Tools"]
        first = (await sandbox.client.get("/companies", params={"orderBy": "created"})).json()["results"][0]
        assert await names(query=f"created>{first['created']}", orderBy="name") == ["Acme Tools", "Zed Cafe"]
        assert await names(orderBy="-created") == ["Acme Tools", "Zed Cafe", "Acme Bakery"]

    async def test_connections_by_status(self, sandbox) -> None:
        company = await sandbox.company()
        first = await sandbox.connection(company["id"])
        await sandbox.connection(company["id"])
        await set_status(sandbox, first, "Linked")

        path = f"/companies/{company['id']}/connections"
        response = await sandbox.client.get(path, params={"query": "status=Linked"})

        assert [c["id"] for c in response.json()["results"]] == [first["id"]]
        assert response.json()["totalResults"] == 1

    @pytest.mark.parametrize(
        ("params", "item_id"),
        [
            ({"query": "name>Acme"}, "query"),  # > is for numbers and dates
            ({"query": "created~2026"}, "query"),  # ~ is for strings
            ({"query": "lastSync=null"}, "query"),  # querying on null is not supported
            ({"query": "dataConnections.status=Linked"}, "query"),  # not inside arrays
            ({"query": "name=Acme &&"}, "query"),
            ({"query": "{name=Acme"}, "query"),
            ({"query": "name=" + "a" * 2048}, "query"),
            ({"query": "created>yesterday"}, "query"),
            ({"orderBy": "-colour"}, "orderBy"),
        ],
    )
    async def test_what_it_cannot_do_is_a_400_naming_the_parameter(self, sandbox, params, item_id) -> None:
        await sandbox.company()
        assert_codat_error(await sandbox.client.get("/companies", params=params), 400, item_id)


# Codat's official SDK against the standalone sandbox: query/orderBy and the headers, as a client sees them.


@pytest.fixture
def sdk(make_sandbox_app) -> Iterator[tuple[CodatBankFeeds, Any, list[httpx.Response]]]:  # type: ignore[no-untyped-def]
    """The SDK, the app it calls, and every response it received (its models do not keep headers)."""
    app = make_sandbox_app(SandboxConfig(seed=3))
    seen: list[httpx.Response] = []
    with (
        serve_in_thread(app) as url,
        httpx.Client(event_hooks={"response": [seen.append]}) as http,
        CodatBankFeeds(
            security=shared.Security(auth_header=basic_auth()),
            server_url=url,
            client=http,
            retry_config=RetryConfig("none", None, False),
        ) as codat,
    ):
        yield codat, app, seen


def test_the_sdk_lists_companies_with_query_and_order_by(sdk) -> None:  # type: ignore[no-untyped-def]
    codat, _, _ = sdk
    for name in ("Beta Ltd", "Alpha Ltd", "Gamma Inc"):
        codat.companies.create(request={"name": name, "tags": {"kind": "ltd" if "Ltd" in name else "inc"}})

    page = codat.companies.list(request={"query": "tags.kind=ltd", "order_by": "name"})

    assert [c.name for c in page.results or []] == ["Alpha Ltd", "Beta Ltd"]
    assert page.total_results == 2
    with pytest.raises(errors.ErrorMessage) as refused:
        codat.companies.list(request={"order_by": "-colour"})
    assert refused.value.status_code == 400


def test_the_sdk_sees_the_rate_limit_headers_and_a_429_with_retry_after(sdk) -> None:  # type: ignore[no-untyped-def]
    codat, app, seen = sdk
    app.state.sandbox.set_knobs(dailyQuota=4)

    codat.companies.list(request={})
    company = codat.companies.create(request={"name": "Dave"})
    codat.connections.create(request={"company_id": company.id, "request_body": {"platform_key": "hcws"}})
    connections = codat.connections.list(request={"company_id": company.id, "query": "status=PendingAuth"})

    assert connections.total_results == 1
    assert [r.headers["X-Rate-Limit-Remaining"] for r in seen] == ["3", "2", "1", "0"]
    assert {r.headers["X-Rate-Limit-Limit"] for r in seen} == {"4"}
    with pytest.raises(errors.ErrorMessage) as refused:
        codat.companies.list(request={})
    assert refused.value.status_code == 429
    assert seen[-1].headers["Retry-After"].isdigit()
    assert seen[-1].headers["X-Rate-Limit-Remaining"] == "0"
