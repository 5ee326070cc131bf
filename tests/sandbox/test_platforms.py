"""The bank-feed targets beyond QuickBooks Online at the sandbox: a profile per platform, Codat Link's OAuth
consent and the mapping API for Xero, NetSuite, FreeAgent and Exact, company information, Sage's OTP and
authorization PUT with its Connect Bank stand-in, and each platform's push rules."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from app.sandbox.models import AccountStatus
from app.sandbox.platforms import PROFILES
from tests.contract import validate_webhook
from tests.sandbox.support import Sandbox, assert_codat_error

TODAY = datetime.now(UTC).date()
MAPPING_PLATFORMS = ["gbol", "akxx", "fbrh", "qudb"]
NAMES = {
    "hcws": "QuickBooks Online Bank Feeds",
    "gbol": "Xero",
    "akxx": "Oracle NetSuite",
    "fbrh": "FreeAgent",
    "qudb": "Exact (Netherlands)",
    "olpr": "Sage Bank Feeds",
}


async def connect(sandbox: Sandbox, platform_key: str) -> dict[str, Any]:
    company = await sandbox.company("Dave's Bakery")
    path = f"/companies/{company['id']}/connections"
    response = await sandbox.client.post(path, json={"platformKey": platform_key})
    assert response.status_code == 200, response.text
    connection = response.json()
    connection["path"] = f"{path}/{connection['id']}"
    connection["companyId"] = company["id"]
    return connection


async def add_account(
    sandbox: Sandbox,
    connection: dict[str, Any],
    account_id: str,
    currency: str = "GBP",
    kind: str = "checking",
) -> None:
    body = {
        "id": account_id,
        "accountName": f"Account {account_id}",
        "accountType": kind,
        "accountNumber": "12345670",
        "sortCode": "12-34-56",
        "currency": currency,
        "balance": 100,
    }
    response = await sandbox.client.post(connection["path"] + "/connectionInfo/bankFeedAccounts", json=body)
    assert response.status_code == 200, response.text


async def authorize(sandbox: Sandbox, connection: dict[str, Any], decision: str = "allow") -> Any:
    """The SMB opens the linkUrl and answers the platform's consent screen."""
    page = await sandbox.client.get(connection["linkUrl"])
    assert page.status_code == 200, page.text
    otp = parse_qs(urlsplit(connection["linkUrl"]).query)["otp"][0]
    consent = connection["linkUrl"].replace("/start?otp=" + otp, "/consent")
    return await sandbox.client.post(consent, data={"otp": otp, "decision": decision})


async def mappings(sandbox: Sandbox, connection: dict[str, Any]) -> dict[str, dict[str, Any]]:
    response = await sandbox.client.get(connection["path"] + "/bankFeedAccounts/mapping")
    assert response.status_code == 200, response.text
    return {m["sourceAccountId"]: m for m in response.json()}


async def map_account(sandbox: Sandbox, connection: dict[str, Any], body: dict[str, Any]) -> Any:
    return await sandbox.client.post(connection["path"] + "/bankFeedAccounts/mapping", json=body)


def events(sandbox: Sandbox, event_type: str) -> list[dict[str, Any]]:
    found = [d.to_json()["event"] for d in sandbox.state.webhooks.deliveries if d.event_type == event_type]
    for event in found:
        validate_webhook(event)
    return found


def option_names(mapping: dict[str, Any]) -> list[str]:
    return [o["name"] for o in mapping["targetAccountOptions"]]


@pytest.fixture
async def xero(sandbox: Sandbox) -> dict[str, Any]:
    """A Xero connection with a GBP current account, a GBP card and a USD account, authorized."""
    connection = await connect(sandbox, "gbol")
    await add_account(sandbox, connection, "gbp-1")
    await add_account(sandbox, connection, "card-1", kind="creditCard")
    await add_account(sandbox, connection, "usd-1", currency="USD")
    assert (await authorize(sandbox, connection)).status_code == 303
    return connection


class TestProfiles:
    @pytest.mark.parametrize("key", sorted(NAMES))
    async def test_each_platform_connects_under_its_own_key_and_name(
        self, sandbox: Sandbox, key: str
    ) -> None:
        connection = await connect(sandbox, key)
        assert (connection["integrationKey"], connection["platformName"]) == (key, NAMES[key])
        assert connection["integrationId"] == PROFILES[key].integration_id
        integration = (await sandbox.client.get(f"/integrations/{key}")).json()
        assert (integration["key"], integration["name"], integration["enabled"]) == (key, NAMES[key], True)

    async def test_a_platform_switched_off_in_the_portal_is_refused_alone(self, sandbox: Sandbox) -> None:
        sandbox.state.set_settings(integrations={"gbol": False})
        company = await sandbox.company()
        path = f"/companies/{company['id']}/connections"
        assert_codat_error(await sandbox.client.post(path, json={"platformKey": "gbol"}), 403)
        assert (await sandbox.client.post(path, json={"platformKey": "akxx"})).status_code == 200
        assert (await sandbox.client.post(path, json={"platformKey": "hcws"})).status_code == 200
        assert (await sandbox.client.get("/integrations/gbol")).json()["enabled"] is False

    async def test_an_unknown_key_cannot_be_switched(self, sandbox: Sandbox) -> None:
        response = await sandbox.client.put("/_sandbox/portal", json={"integrations": {"zzzz": True}})
        assert_codat_error(response, 422, "integrations")

    @pytest.mark.parametrize("key", ["gbol", "olpr"])
    async def test_qbo_credentials_are_refused_for_other_platforms(self, sandbox: Sandbox, key: str) -> None:
        connection = await connect(sandbox, key)
        response = await sandbox.client.post(
            connection["path"] + "/connectionInfo/bankFeedAccounts/credentials"
        )
        assert "only for QuickBooks Online" in assert_codat_error(response, 400)["error"]


class TestLinkAndConsent:
    @pytest.mark.parametrize("key", MAPPING_PLATFORMS)
    async def test_allowing_access_links_the_connection_once(self, sandbox: Sandbox, key: str) -> None:
        connection = await connect(sandbox, key)
        response = await authorize(sandbox, connection)
        assert response.status_code == 303
        assert "/mapping?otp=" in response.headers["location"]
        got = (await sandbox.client.get(connection["path"])).json()
        assert got["status"] == "Linked"
        assert [e["payload"]["connection"]["id"] for e in events(sandbox, "connection.connected")] == [
            connection["id"]
        ]

    async def test_allowing_again_sends_no_second_event(self, sandbox: Sandbox) -> None:
        connection = await connect(sandbox, "gbol")
        await authorize(sandbox, connection)
        again = await authorize(sandbox, connection)
        assert again.status_code == 303
        assert len(events(sandbox, "connection.connected")) == 1
        assert events(sandbox, "connection.reconnected") == []

    async def test_cancelling_leaves_the_connection_pending(self, sandbox: Sandbox) -> None:
        connection = await connect(sandbox, "gbol")
        response = await authorize(sandbox, connection, decision="deny")
        assert "Access was not granted" in response.text
        assert (await sandbox.client.get(connection["path"])).json()["status"] == "PendingAuth"

    async def test_a_consent_without_a_live_otp_is_refused(self, sandbox: Sandbox) -> None:
        connection = await connect(sandbox, "gbol")
        consent = connection["linkUrl"].split("/start?")[0] + "/consent"
        response = await sandbox.client.post(consent, data={"otp": "000000", "decision": "allow"})
        assert response.status_code == 401
        assert (await sandbox.client.get(connection["path"])).json()["status"] == "PendingAuth"

    async def test_a_sage_link_is_not_a_link_page(self, sandbox: Sandbox) -> None:
        connection = await connect(sandbox, "olpr")
        page = await sandbox.client.get(connection["linkUrl"])
        assert page.status_code == 404
        assert "start inside Sage" in page.text
        credentials = connection["linkUrl"].split("/start?")[0] + "/credentials"
        otp = parse_qs(urlsplit(connection["linkUrl"]).query)["otp"][0]
        refused = await sandbox.client.post(credentials, data={"otp": otp})
        assert refused.status_code == 401
        assert sandbox.state.connections[connection["id"]].credentials == []


class TestMapping:
    async def test_options_are_filtered_by_currency_and_type(self, sandbox: Sandbox, xero) -> None:
        found = await mappings(sandbox, xero)
        assert option_names(found["gbp-1"]) == ["Business Current Account", "Business Savings"]
        assert option_names(found["card-1"]) == ["Business Credit Card"]
        assert option_names(found["usd-1"]) == ["USD Account"]
        assert {m["status"] for m in found.values()} == {"pending"}
        assert {m["targetAccountId"] for m in found.values()} == {None}

    async def test_a_mapping_answers_connecting_then_turns_connected(self, sandbox: Sandbox, xero) -> None:
        target = (await mappings(sandbox, xero))["gbp-1"]["targetAccountOptions"][0]
        start = f"{TODAY - timedelta(days=30)}T00:00:00"
        body = {"sourceAccountId": "gbp-1", "targetAccountId": target["id"], "feedStartDate": start}
        response = await map_account(sandbox, xero, body)
        assert response.json() == {
            "sourceAccountId": "gbp-1",
            "targetAccountId": target["id"],
            "status": "connecting",
            "error": None,
        }
        await asyncio.sleep(0)
        mapped = (await mappings(sandbox, xero))["gbp-1"]
        assert (mapped["status"], mapped["targetAccountName"]) == ("connected", "Business Current Account")
        assert mapped["feedStartDate"] == start
        connected = events(sandbox, "bankFeeds.sourceAccount.connected")
        assert [e["payload"]["sourceAccount"]["id"] for e in connected] == ["gbp-1"]
        # The same mapping again succeeds unchanged (Codat, 2026-06-24).
        again = await map_account(
            sandbox, xero, {"sourceAccountId": "gbp-1", "targetAccountId": target["id"]}
        )
        assert again.json()["status"] == "connected"

    async def test_a_target_of_the_wrong_currency_is_refused_naming_the_rule(
        self, sandbox: Sandbox, xero
    ) -> None:
        usd_target = (await mappings(sandbox, xero))["usd-1"]["targetAccountOptions"][0]["id"]
        response = await map_account(
            sandbox, xero, {"sourceAccountId": "gbp-1", "targetAccountId": usd_target}
        )
        body = assert_codat_error(response, 400, "targetAccountId")
        assert "same currency" in body["error"]
        assert (await mappings(sandbox, xero))["gbp-1"]["status"] == "pending"

    async def test_a_target_of_the_wrong_type_is_refused(self, sandbox: Sandbox, xero) -> None:
        card_target = (await mappings(sandbox, xero))["card-1"]["targetAccountOptions"][0]["id"]
        response = await map_account(
            sandbox, xero, {"sourceAccountId": "gbp-1", "targetAccountId": card_target}
        )
        assert "maps only to a bank account" in assert_codat_error(response, 400, "targetAccountId")["error"]

    async def test_a_target_fed_by_another_account_is_no_longer_offered(self, sandbox: Sandbox, xero) -> None:
        await add_account(sandbox, xero, "gbp-2")
        target = (await mappings(sandbox, xero))["gbp-1"]["targetAccountOptions"][0]["id"]
        assert (
            await map_account(sandbox, xero, {"sourceAccountId": "gbp-1", "targetAccountId": target})
        ).is_success
        assert target not in [
            o["id"] for o in (await mappings(sandbox, xero))["gbp-2"]["targetAccountOptions"]
        ]
        response = await map_account(sandbox, xero, {"sourceAccountId": "gbp-2", "targetAccountId": target})
        assert "already exists" in assert_codat_error(response, 400, "targetAccountId")["error"]

    async def test_no_target_creates_a_new_account_in_the_books(self, sandbox: Sandbox, xero) -> None:
        response = await map_account(sandbox, xero, {"sourceAccountId": "usd-1"})
        new_id = response.json()["targetAccountId"]
        await asyncio.sleep(0)
        mapped = (await mappings(sandbox, xero))["usd-1"]
        assert (mapped["targetAccountId"], mapped["targetAccountName"]) == (new_id, "Account usd-1")

    async def test_unknown_source_or_target(self, sandbox: Sandbox, xero) -> None:
        assert_codat_error(await map_account(sandbox, xero, {"sourceAccountId": "nope"}), 404)
        response = await map_account(sandbox, xero, {"sourceAccountId": "gbp-1", "targetAccountId": "nope"})
        assert_codat_error(response, 400, "targetAccountId")
        response = await map_account(sandbox, xero, {"sourceAccountId": "gbp-1", "extra": 1})
        assert_codat_error(response, 400, "extra")

    async def test_mapping_waits_for_authorization(self, sandbox: Sandbox) -> None:
        connection = await connect(sandbox, "gbol")
        await add_account(sandbox, connection, "gbp-1")
        listed = await mappings(sandbox, connection)
        assert (listed["gbp-1"]["status"], listed["gbp-1"]["targetAccountOptions"]) == ("pending", None)
        response = await map_account(sandbox, connection, {"sourceAccountId": "gbp-1"})
        assert "must authorize" in assert_codat_error(response, 400)["error"]

    @pytest.mark.parametrize("key", ["hcws", "olpr"])
    async def test_platforms_that_map_inside_are_refused(self, sandbox: Sandbox, key: str) -> None:
        connection = await connect(sandbox, key)
        response = await map_account(sandbox, connection, {"sourceAccountId": "x"})
        assert "mapped inside it" in assert_codat_error(response, 400)["error"]

    async def test_disconnecting_frees_the_target_for_a_new_mapping(self, sandbox: Sandbox, xero) -> None:
        target = (await mappings(sandbox, xero))["gbp-1"]["targetAccountOptions"][0]["id"]
        await map_account(sandbox, xero, {"sourceAccountId": "gbp-1", "targetAccountId": target})
        await asyncio.sleep(0)
        patch = {"id": "gbp-1", "status": "disconnected"}
        assert (
            await sandbox.client.patch(xero["path"] + "/connectionInfo/bankFeedAccounts/gbp-1", json=patch)
        ).is_success
        assert (await sandbox.client.get(xero["path"])).json()["status"] == "Linked"
        remapped = await map_account(sandbox, xero, {"sourceAccountId": "gbp-1", "targetAccountId": target})
        assert remapped.json()["status"] == "connecting"


class TestCompanyInformation:
    @pytest.mark.parametrize(("key", "currency"), [("gbol", "GBP"), ("akxx", "USD")])
    async def test_xero_and_netsuite_tell_the_company(
        self, sandbox: Sandbox, key: str, currency: str
    ) -> None:
        connection = await connect(sandbox, key)
        await authorize(sandbox, connection)
        info = (await sandbox.client.get(connection["path"] + "/bankFeeds/info")).json()
        assert (info["companyName"], info["baseCurrency"], info["multicurrencyEnabled"]) == (
            "Dave's Bakery",
            currency,
            True,
        )

    @pytest.mark.parametrize("key", ["fbrh", "qudb", "olpr", "hcws"])
    async def test_other_platforms_do_not(self, sandbox: Sandbox, key: str) -> None:
        connection = await connect(sandbox, key)
        response = await sandbox.client.get(connection["path"] + "/bankFeeds/info")
        assert "not available" in assert_codat_error(response, 400)["error"]


def transaction(tid: str, when: object, amount: float = -12.5, kind: str = "Debit") -> dict[str, Any]:
    return {
        "id": tid,
        "date": f"{when}T10:00:00",
        "description": tid,
        "amount": amount,
        "balance": 100,
        "transactionType": kind,
    }


async def push(sandbox: Sandbox, connection: dict[str, Any], account_id: str, transactions: list) -> Any:
    path = f"{connection['path']}/push/bankAccounts/{account_id}/bankTransactions"
    return await sandbox.client.post(path, json={"accountId": account_id, "transactions": transactions})


async def settled(sandbox: Sandbox, connection: dict[str, Any], response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    await asyncio.sleep(0.01)  # pushCompletionSeconds 0: the push completes on its timer at once
    key = response.json()["pushOperationKey"]
    return (await sandbox.client.get(f"/companies/{connection['companyId']}/push/{key}")).json()


def ledger(sandbox: Sandbox, connection: dict[str, Any], account_id: str) -> list[dict[str, Any]]:
    return sandbox.state.bank_transactions.get((connection["id"], account_id), [])


async def mapped(sandbox: Sandbox, key: str) -> dict[str, Any]:
    """An authorized connection of a mapping platform with source account gbp-1 connected."""
    connection = await connect(sandbox, key)
    await add_account(sandbox, connection, "gbp-1", currency=PROFILES[key].base_currency)
    await authorize(sandbox, connection)
    assert (await map_account(sandbox, connection, {"sourceAccountId": "gbp-1"})).is_success
    await asyncio.sleep(0)
    return connection


class TestPushRules:
    async def test_xero_takes_a_year_of_history_but_not_older(self, sandbox: Sandbox) -> None:
        connection = await mapped(sandbox, "gbol")
        old = transaction("too-old", TODAY - timedelta(days=366))
        failed = await settled(sandbox, connection, await push(sandbox, connection, "gbp-1", [old]))
        assert failed["status"] == "Failed"
        [error] = failed["validation"]["errors"]
        assert error["itemId"] == "too-old"
        assert "more than 365 days old" in error["message"]
        assert ledger(sandbox, connection, "gbp-1") == []
        year = [transaction("t1", TODAY - timedelta(days=360)), transaction("t2", TODAY)]
        ok = await settled(sandbox, connection, await push(sandbox, connection, "gbp-1", year))
        assert ok["status"] == "Success"
        # Xero's rule is the window, not the newest transaction: an earlier back-fill still goes in.
        earlier = [transaction("t0", TODAY - timedelta(days=200))]
        assert (await settled(sandbox, connection, await push(sandbox, connection, "gbp-1", earlier)))[
            "status"
        ] == "Success"
        assert [t["id"] for t in ledger(sandbox, connection, "gbp-1")] == ["t1", "t2", "t0"]

    async def test_xero_requires_balance(self, sandbox: Sandbox) -> None:
        connection = await mapped(sandbox, "gbol")
        body = transaction("t1", TODAY)
        del body["balance"]
        assert_codat_error(await push(sandbox, connection, "gbp-1", [body]), 400, "transactions.0.balance")

    async def test_freeagent_writes_a_positive_transfer_as_other(self, sandbox: Sandbox) -> None:
        connection = await mapped(sandbox, "fbrh")
        transfers = [transaction("in", TODAY, 1.6, "Xfer"), transaction("out", TODAY, -2.0, "Xfer")]
        assert (await settled(sandbox, connection, await push(sandbox, connection, "gbp-1", transfers)))[
            "status"
        ] == "Success"
        assert [(t["id"], t["transactionType"]) for t in ledger(sandbox, connection, "gbp-1")] == [
            ("in", "Other"),
            ("out", "Xfer"),
        ]

    async def test_qbo_still_takes_only_credit_debit_or_unknown(self, sandbox: Sandbox) -> None:
        connection = await connect(sandbox, "hcws")
        await add_account(sandbox, connection, "ac-1", currency="USD")
        sandbox.state.connections[connection["id"]].accounts["ac-1"].status = AccountStatus.connected
        response = await push(sandbox, connection, "ac-1", [transaction("t1", TODAY, 5, "Xfer")])
        assert (
            "takes only Credit, Debit, Unknown"
            in assert_codat_error(response, 400, "transactions.0.transactionType")["error"]
        )

    async def test_an_unknown_transaction_type_is_refused(self, sandbox: Sandbox) -> None:
        connection = await mapped(sandbox, "qudb")
        response = await push(sandbox, connection, "gbp-1", [transaction("t1", TODAY, 5, "Gift")])
        assert_codat_error(response, 400, "transactions.0.transactionType")


async def sage_sign_in(sandbox: Sandbox, connection_id: str, otp: str) -> Any:
    return await sandbox.client.post("/sage/sign-in", data={"connectionId": connection_id, "otp": otp})


def session_of(page: str) -> str:
    return page.split('name="session" value="')[1].split('"')[0]


@pytest.fixture
async def sage(sandbox: Sandbox) -> dict[str, Any]:
    connection = await connect(sandbox, "olpr")
    await add_account(sandbox, connection, "gbp-1")
    await add_account(sandbox, connection, "gbp-2")
    return connection


class TestSage:
    async def test_the_otp_is_for_sage_only(self, sandbox: Sandbox) -> None:
        connection = await connect(sandbox, "gbol")
        response = await sandbox.client.post(connection["path"] + "/bankFeeds/otp")
        assert "only for Sage" in assert_codat_error(response, 400)["error"]

    async def test_connection_id_and_otp_typed_into_sage_link_the_connection(
        self, sandbox: Sandbox, sage: dict[str, Any]
    ) -> None:
        otp = (await sandbox.client.post(sage["path"] + "/bankFeeds/otp")).json()
        assert datetime.fromisoformat(otp["expiry"]) > datetime.now(UTC)
        accounts = await sage_sign_in(sandbox, sage["id"], otp["otp"])
        assert accounts.status_code == 200
        assert "Account gbp-1" in accounts.text
        assert (await sandbox.client.get(sage["path"])).json()["status"] == "PendingAuth"
        form = {"session": session_of(accounts.text), "account": ["gbp-1"], "product": "Sage Accounting"}
        banking = await sandbox.client.post("/sage/accounts", data=form)
        assert 'id="feed-status-gbp-1">Connected' in banking.text
        assert (await sandbox.client.get(sage["path"])).json()["status"] == "Linked"
        listed = (await sandbox.client.get(sage["path"] + "/connectionInfo/bankFeedAccounts")).json()
        assert [(a["id"], a["status"]) for a in listed] == [("gbp-1", "connected"), ("gbp-2", "pending")]
        assert [
            e["payload"]["sourceAccount"]["id"] for e in events(sandbox, "bankFeeds.sourceAccount.connected")
        ] == ["gbp-1"]
        # One-time: the same password does not sign in again.
        assert (await sage_sign_in(sandbox, sage["id"], otp["otp"])).status_code == 401

    async def test_products_that_ask_for_confirm_hold_the_account_until_confirmed(
        self, sandbox: Sandbox, sage: dict[str, Any]
    ) -> None:
        otp = (await sandbox.client.post(sage["path"] + "/bankFeeds/otp")).json()["otp"]
        accounts = await sage_sign_in(sandbox, sage["id"], otp)
        session = session_of(accounts.text)
        form = {"session": session, "account": ["gbp-1"], "product": "Sage 50"}
        banking = await sandbox.client.post("/sage/accounts", data=form)
        assert 'id="feed-status-gbp-1">Pending Confirmation' in banking.text
        listed = (await sandbox.client.get(sage["path"] + "/connectionInfo/bankFeedAccounts")).json()
        assert listed[0]["status"] == "pending"
        confirmed = await sandbox.client.post("/sage/confirm", data={"session": session, "account": "gbp-1"})
        assert 'id="feed-status-gbp-1">Connected' in confirmed.text
        listed = (await sandbox.client.get(sage["path"] + "/connectionInfo/bankFeedAccounts")).json()
        assert listed[0]["status"] == "connected"

    @pytest.mark.parametrize("wrong", ["otp", "connection", "expired", "replaced"])
    async def test_sage_refuses_a_wrong_connection_id_or_otp(
        self, sandbox: Sandbox, sage: dict[str, Any], wrong: str
    ) -> None:
        first = (await sandbox.client.post(sage["path"] + "/bankFeeds/otp")).json()["otp"]
        otp, connection_id = first, sage["id"]
        if wrong == "otp":
            otp = "999999" if first != "999999" else "999998"
        elif wrong == "connection":
            connection_id = (await connect(sandbox, "olpr"))["id"]
        elif wrong == "expired":
            sandbox.state.clock.advance(sandbox.state.knobs.otp_lifetime_seconds + 1)
        else:
            await sandbox.client.post(sage["path"] + "/bankFeeds/otp")
        response = await sage_sign_in(sandbox, connection_id, otp)
        assert response.status_code == 401
        assert "Get a new password" in response.text
        assert (await sandbox.client.get(sage["path"])).json()["status"] == "PendingAuth"

    async def test_sage_redirects_to_the_fintech_login_which_authorizes_by_put(
        self, sandbox: Sandbox, sage: dict[str, Any]
    ) -> None:
        sandbox.state.set_settings(sageLoginUrl="https://fintech.example/sage-login")
        redirect = await sandbox.client.post("/sage/web-login")
        assert redirect.status_code == 303
        location = urlsplit(redirect.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == "https://fintech.example/sage-login"
        query = parse_qs(location.query)
        authorization_id, redirect_uri = query["authorizationId"][0], query["redirectUri"][0]
        wrong = await sandbox.client.put(sage["path"] + "/authorization", json={"authorizationId": "made-up"})
        assert_codat_error(wrong, 404, "authorizationId")
        put = await sandbox.client.put(
            sage["path"] + "/authorization", json={"authorizationId": authorization_id}
        )
        assert put.status_code == 200
        assert put.json()["status"] == "PendingAuth"
        accounts = await sandbox.client.get(redirect_uri, params={"state": authorization_id})
        assert "Account gbp-2" in accounts.text
        form = {"session": session_of(accounts.text), "account": ["gbp-2"], "product": "Sage Accounting"}
        await sandbox.client.post("/sage/accounts", data=form)
        assert (await sandbox.client.get(sage["path"])).json()["status"] == "Linked"
        # The authorizationId was spent.
        again = await sandbox.client.put(
            sage["path"] + "/authorization", json={"authorizationId": authorization_id}
        )
        assert_codat_error(again, 404, "authorizationId")

    async def test_the_authorization_put_is_for_sage_only(self, sandbox: Sandbox) -> None:
        connection = await connect(sandbox, "gbol")
        response = await sandbox.client.put(
            connection["path"] + "/authorization", json={"authorizationId": "x"}
        )
        assert "only for Sage" in assert_codat_error(response, 400)["error"]

    async def test_sage_refuses_a_transaction_older_than_the_newest(
        self, sandbox: Sandbox, sage: dict[str, Any]
    ) -> None:
        otp = (await sandbox.client.post(sage["path"] + "/bankFeeds/otp")).json()["otp"]
        accounts = await sage_sign_in(sandbox, sage["id"], otp)
        form = {"session": session_of(accounts.text), "account": ["gbp-1"], "product": "Sage Accounting"}
        await sandbox.client.post("/sage/accounts", data=form)
        ok = await settled(sandbox, sage, await push(sandbox, sage, "gbp-1", [transaction("t2", TODAY)]))
        assert ok["status"] == "Success"
        older = [transaction("t1", TODAY - timedelta(days=1))]
        failed = await settled(sandbox, sage, await push(sandbox, sage, "gbp-1", older))
        assert failed["status"] == "Failed"
        assert "not older than the newest" in failed["validation"]["errors"][0]["message"]


class TestBooksKnob:
    async def test_the_books_set_by_a_test_are_what_mapping_and_information_show(
        self, sandbox: Sandbox
    ) -> None:
        connection = await connect(sandbox, "gbol")
        await add_account(sandbox, connection, "usd-card", currency="USD", kind="creditCard")
        books = {
            "companyName": "Dave's Bakery Ltd",
            "baseCurrency": "GBP",
            "multicurrencyEnabled": False,
            "currencies": ["GBP"],
            "accounts": [
                {"id": "t-usd-card", "name": "Amex USD", "currency": "USD", "kind": "creditCard"},
                {"id": "t-gbp-card", "name": "Amex GBP", "currency": "GBP", "kind": "creditCard"},
            ],
        }
        put = await sandbox.client.put(f"/_sandbox/connections/{connection['id']}/books", json=books)
        assert put.status_code == 200, put.text
        await authorize(sandbox, connection)
        assert option_names((await mappings(sandbox, connection))["usd-card"]) == ["Amex USD"]
        info = (await sandbox.client.get(connection["path"] + "/bankFeeds/info")).json()
        assert (info["companyName"], info["multicurrencyEnabled"]) == ("Dave's Bakery Ltd", False)
        # Without multicurrency, no new account in another currency than the base one.
        response = await map_account(sandbox, connection, {"sourceAccountId": "usd-card"})
        assert "Multicurrency is not enabled" in assert_codat_error(response, 400, "sourceAccountId")["error"]

    async def test_bad_books_are_a_422_naming_the_field(self, sandbox: Sandbox) -> None:
        connection = await connect(sandbox, "gbol")
        books = {
            "companyName": "x",
            "baseCurrency": "XXY",
            "multicurrencyEnabled": True,
            "currencies": [],
            "accounts": [],
        }
        response = await sandbox.client.put(f"/_sandbox/connections/{connection['id']}/books", json=books)
        assert_codat_error(response, 422, "baseCurrency")
        assert (
            await sandbox.client.get(f"/_sandbox/connections/{connection['id']}/books")
        ).status_code == 404


async def authorize_and_connect(sandbox: Sandbox, connection: dict[str, Any], account_id: str) -> None:
    """Each platform's own way from a new (or re-authorizing) connection to a connected source account."""
    key = connection["integrationKey"]
    if key == "hcws":
        credentials = (
            await sandbox.client.post(connection["path"] + "/connectionInfo/bankFeedAccounts/credentials")
        ).json()
        form = {**credentials, "account": [account_id], "feedStartDate": str(TODAY - timedelta(days=5))}
        assert (await sandbox.client.post("/qbo/connect", data=form)).status_code == 200
    elif key == "olpr":
        otp = (await sandbox.client.post(connection["path"] + "/bankFeeds/otp")).json()["otp"]
        accounts = await sage_sign_in(sandbox, connection["id"], otp)
        form = {"session": session_of(accounts.text), "account": [account_id], "product": "Sage Accounting"}
        await sandbox.client.post("/sage/accounts", data=form)
    else:
        if (await sandbox.client.get(connection["path"])).json()["status"] != "Linked":
            connection["linkUrl"] = (await sandbox.client.get(connection["path"])).json()["linkUrl"]
            await authorize(sandbox, connection)
        assert (await map_account(sandbox, connection, {"sourceAccountId": account_id})).is_success
        await asyncio.sleep(0)
    assert (await sandbox.client.get(connection["path"])).json()["status"] == "Linked"
    listed = {
        a["id"]: a["status"]
        for a in (await sandbox.client.get(connection["path"] + "/connectionInfo/bankFeedAccounts")).json()
    }
    assert listed[account_id] == "connected"


@pytest.mark.parametrize("key", sorted(NAMES))
async def test_every_platform_connects_backfills_disconnects_and_reconnects_once(
    sandbox: Sandbox, key: str
) -> None:
    connection = await connect(sandbox, key)
    currency = PROFILES[key].base_currency
    await add_account(sandbox, connection, "ac-1", currency=currency)
    await authorize_and_connect(sandbox, connection, "ac-1")
    backfill = [transaction(f"t{day}", TODAY - timedelta(days=day)) for day in (3, 2, 1)]
    assert (await settled(sandbox, connection, await push(sandbox, connection, "ac-1", backfill)))[
        "status"
    ] == "Success"

    patch = {"id": "ac-1", "status": "disconnected"}
    await sandbox.client.patch(connection["path"] + "/connectionInfo/bankFeedAccounts/ac-1", json=patch)
    refused = await push(sandbox, connection, "ac-1", [transaction("t0", TODAY)])
    assert_codat_error(refused, 400, "accountId")

    await authorize_and_connect(sandbox, connection, "ac-1")
    assert (
        await settled(
            sandbox, connection, await push(sandbox, connection, "ac-1", [transaction("t0", TODAY)])
        )
    )["status"] == "Success"
    assert [t["id"] for t in ledger(sandbox, connection, "ac-1")] == ["t3", "t2", "t1", "t0"]
    assert [
        e["payload"]["sourceAccount"]["id"] for e in events(sandbox, "bankFeeds.sourceAccount.connected")
    ] == ["ac-1", "ac-1"]
