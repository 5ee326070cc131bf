"""Onboarding to each target through the end-user API: the platform on connect and the one live target per
business, the steps that belong to one flow only (links, QuickBooks credentials, Sage codes and sign-in,
mapping), mapping checked against Codat's options before anything is sent, and disconnecting."""

import logging

import pytest

from tests.factories import ACCOUNTS, codat_accounts, connect_in_quickbooks, register
from tests.targets import MAPPING_PLATFORMS, allow_access, choose_in_sage, sign_in_to_sage
from tests.test_secrets_under_failure import every_table_as_text

USD_CHECKING = {"acc-1": ACCOUNTS["acc-1"]}


@pytest.fixture
async def user(client, service_headers, user_headers):  # type: ignore[no-untyped-def]
    """biz-1 with one USD checking account, acc-1."""
    await register(client, service_headers(), "biz-1", accounts=USD_CHECKING)
    return user_headers("biz-1")


async def connect(client, user, platform: str | None = None):  # type: ignore[no-untyped-def]
    body = {"platform": platform} if platform else None
    return await client.post("/v1/bank-feed/connect", json=body, headers=user)


def codat_connection(sandbox, connection_id: str):  # type: ignore[no-untyped-def]
    return sandbox.connections[connection_id]


def refused(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    return response.json()


async def allowed_xero(client, user):  # type: ignore[no-untyped-def]
    out = (await connect(client, user, "xero")).json()
    await allow_access(client, out["linkUrl"])
    return out


class TestConnectToAPlatform:
    @pytest.mark.parametrize(
        ("platform", "key"),
        [("quickbooks-online", "hcws"), ("xero", "gbol"), ("sage", "olpr"), ("netsuite", "akxx")],
    )
    async def test_the_connection_is_made_with_the_platforms_key(self, client, user, sandbox, platform, key):
        response = await connect(client, user, platform)

        assert response.status_code == 200, response.text
        assert response.json()["platform"] == platform
        assert codat_connection(sandbox, response.json()["connectionId"]).platform_key == key
        view = (await client.get("/v1/bank-feed", headers=user)).json()
        assert view["platform"] == platform

    async def test_no_platform_means_quickbooks_then_the_current_ones(self, client, user, sandbox):
        first = (await connect(client, user)).json()
        await client.post("/v1/bank-feed/disconnect", headers=user)
        xero = (await connect(client, user, "xero")).json()
        again = (await connect(client, user)).json()

        assert first["platform"] == "quickbooks-online"
        assert (xero["platform"], again["platform"]) == ("xero", "xero")
        assert again["connectionId"] == xero["connectionId"]

    async def test_an_unknown_platform_is_a_422_naming_it(self, client, user, sandbox):
        body = refused(await connect(client, user, "wave"), 422, "validation_error")

        assert [f["field"] for f in body["fields"]] == ["body.platform"]
        assert sandbox.counters.get("create-company", 0) == 0

    async def test_sage_gets_a_code_and_no_link(self, client, user, sandbox):
        out = (await connect(client, user, "sage")).json()

        assert (out["linkUrl"], out["expiresAt"]) == (None, None)
        assert out["action"] == "enter_code_in_sage"
        assert out["sageCode"]["connectionId"] == out["connectionId"]
        assert out["sageCode"]["code"] == codat_connection(sandbox, out["connectionId"]).sage.otp.code

    async def test_a_link_platform_gets_a_link_and_no_code(self, client, user):
        out = (await connect(client, user, "xero")).json()

        assert out["linkUrl"].startswith("http://test/sandbox/")
        assert out["sageCode"] is None
        assert out["action"] == "authorize"

    @pytest.mark.parametrize("platform", ["xero", "sage", "exact"])
    async def test_a_rename_reaches_the_platforms_source_account(self, client, user, platform):
        out = (await connect(client, user, platform)).json()

        renamed = await client.patch(
            "/v1/bank-feed/accounts/acc-1", json={"accountName": "Payroll"}, headers=user
        )

        assert renamed.json()["accountName"] == "Payroll"
        assert (await codat_accounts(client, out["connectionId"]))["acc-1"]["accountName"] == "Payroll"


class TestOneLiveTarget:
    async def test_another_platform_while_connected_is_refused_naming_the_way_out(
        self, client, user, sandbox
    ):
        out = (await connect(client, user)).json()
        await connect_in_quickbooks(
            client, out["linkUrl"], ["acc-1"], feed_start=str(sandbox.clock.now().date())
        )
        creates = sandbox.counters.get("create-connection", 0)

        body = refused(await connect(client, user, "xero"), 409, "platform_in_use")

        assert "QuickBooks Online" in body["detail"]
        assert "POST /v1/bank-feed/disconnect" in body["detail"]
        assert sandbox.counters.get("create-connection", 0) == creates

    async def test_a_connection_not_yet_authorized_is_in_use_too(self, client, user):
        await connect(client, user, "sage")

        refused(await connect(client, user, "xero"), 409, "platform_in_use")

    async def test_after_a_disconnect_any_platform_connects_anew(self, client, user, sandbox):
        out = (await connect(client, user)).json()
        await connect_in_quickbooks(
            client, out["linkUrl"], ["acc-1"], feed_start=str(sandbox.clock.now().date())
        )

        stopped = await client.post("/v1/bank-feed/disconnect", headers=user)
        xero = await connect(client, user, "xero")

        assert (stopped.json()["action"], stopped.json()["platform"]) == ("reconnect", "quickbooks-online")
        assert codat_connection(sandbox, out["connectionId"]).status.value == "Unlinked"
        assert xero.status_code == 200, xero.text
        assert xero.json()["connectionId"] != out["connectionId"]
        assert codat_connection(sandbox, xero.json()["connectionId"]).platform_key == "gbol"


class TestDisconnect:
    async def test_without_a_connection_is_refused(self, client, user):
        refused(await client.post("/v1/bank-feed/disconnect", headers=user), 409, "not_connected")

    async def test_one_never_authorized_is_set_aside_without_asking_codat(self, client, user, sandbox):
        await connect(client, user, "xero")

        stopped = await client.post("/v1/bank-feed/disconnect", headers=user)

        assert stopped.status_code == 200, stopped.text
        assert (stopped.json()["action"], stopped.json()["connection"]) == ("connect", None)
        assert sandbox.counters.get("unlink-connection", 0) == 0
        assert (await connect(client, user, "sage")).status_code == 200

    async def test_twice_changes_nothing_the_second_time(self, client, user, sandbox):
        out = await allowed_xero(client, user)
        await client.post("/v1/bank-feed/refresh", headers=user)

        first = await client.post("/v1/bank-feed/disconnect", headers=user)
        second = await client.post("/v1/bank-feed/disconnect", headers=user)

        assert first.json()["connection"]["status"] == second.json()["connection"]["status"] == "Unlinked"
        assert sandbox.counters["unlink-connection"] == 1
        assert codat_connection(sandbox, out["connectionId"]).status.value == "Unlinked"


class TestStepsOfOtherFlows:
    @pytest.mark.parametrize("path", ["/v1/bank-feed/link", "/v1/bank-feed/link/redirect"])
    async def test_sage_has_no_link(self, client, user, path):
        await connect(client, user, "sage")

        body = refused(await client.get(path, headers=user), 409, "not_for_this_platform")

        assert "POST /v1/bank-feed/sage-code" in body["detail"]

    async def test_quickbooks_has_no_mapping(self, client, user, sandbox):
        await connect(client, user)

        refused(await client.get("/v1/bank-feed/mapping", headers=user), 409, "not_for_this_platform")
        mapped = await client.post(
            "/v1/bank-feed/accounts/acc-1/mapping", json={"targetAccountId": None}, headers=user
        )
        refused(mapped, 409, "not_for_this_platform")
        assert sandbox.counters.get("get-bank-account-mapping", 0) == 0

    @pytest.mark.parametrize("platform", ["xero", "sage"])
    async def test_credentials_are_quickbooks_only(self, client, user, sandbox, platform):
        await connect(client, user, platform)

        refused(await client.post("/v1/bank-feed/credentials", headers=user), 409, "not_for_this_platform")
        refused(await client.delete("/v1/bank-feed/credentials", headers=user), 409, "not_for_this_platform")
        with_credentials = await client.post(
            "/v1/bank-feed/reconnect", json={"withCredentials": True}, headers=user
        )
        refused(with_credentials, 409, "not_for_this_platform")
        assert sandbox.counters.get("generate-credentials", 0) == 0

    @pytest.mark.parametrize("platform", ["quickbooks-online", "xero"])
    async def test_sage_codes_and_sign_in_are_sage_only(self, client, user, platform):
        await connect(client, user, platform)

        refused(await client.post("/v1/bank-feed/sage-code", headers=user), 409, "not_for_this_platform")
        authorized = await client.post(
            "/v1/bank-feed/sage/authorization", json={"authorizationId": "abc"}, headers=user
        )
        refused(authorized, 409, "not_for_this_platform")

    async def test_before_connecting_each_is_not_connected(self, client, user):
        for method, path in [("GET", "/mapping"), ("POST", "/sage-code"), ("GET", "/link")]:
            response = await client.request(method, f"/v1/bank-feed{path}", headers=user)
            refused(response, 409, "not_connected")


class TestSageCode:
    async def test_each_call_replaces_the_code_and_is_not_kept(self, client, user, sandbox):
        out = (await connect(client, user, "sage")).json()

        response = await client.post("/v1/bank-feed/sage-code", headers=user)

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        code = response.json()
        assert code["connectionId"] == out["connectionId"]
        assert code["code"] != out["sageCode"]["code"]
        assert code["code"] == codat_connection(sandbox, out["connectionId"]).sage.otp.code

    async def test_the_code_never_reaches_the_logs_or_the_tables(self, app, client, user, caplog):
        caplog.set_level(logging.DEBUG)
        out = (await connect(client, user, "sage")).json()
        headers = {**user, "Idempotency-Key": "sage-code-1"}
        code = (await client.post("/v1/bank-feed/sage-code", headers=headers)).json()["code"]

        stored = await every_table_as_text(app)
        logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
        for secret in (out["sageCode"]["code"], code):
            assert secret not in logged
            assert secret not in stored

    async def test_the_code_signs_in_to_sage(self, client, user, sandbox):
        out = (await connect(client, user, "sage")).json()
        code = (await client.post("/v1/bank-feed/sage-code", headers=user)).json()

        session = await sign_in_to_sage(client, code)
        await choose_in_sage(client, session, ["acc-1"], product="Sage Accounting")

        view = (await client.post("/v1/bank-feed/refresh", headers=user)).json()
        assert view["connection"]["status"] == "Linked"
        assert (view["accounts"][0]["status"], view["action"]) == ("connected", "none")
        assert codat_connection(sandbox, out["connectionId"]).status.value == "Linked"


class TestSageAuthorization:
    async def test_sages_sign_in_through_our_login_page_authorizes(self, client, user, sandbox):
        await connect(client, user, "sage")
        sandbox.set_settings(sageLoginUrl="https://fintech.example/sage-login")
        redirect = await client.post("/sandbox/sage/web-login")
        authorization_id = redirect.headers["location"].split("authorizationId=")[1].split("&")[0]

        response = await client.post(
            "/v1/bank-feed/sage/authorization", json={"authorizationId": authorization_id}, headers=user
        )

        assert response.status_code == 200, response.text
        assert (
            response.json()["action"] == "enter_code_in_sage"
        )  # still PendingAuth until accounts are chosen
        assert sandbox.counters["update-connection-authorization"] == 1

    async def test_an_id_sage_did_not_issue_is_a_422_naming_it(self, client, user):
        await connect(client, user, "sage")

        response = await client.post(
            "/v1/bank-feed/sage/authorization", json={"authorizationId": "made-up"}, headers=user
        )

        body = refused(response, 422, "validation_error")
        assert [f["field"] for f in body["fields"]] == ["authorizationId"]


class TestMapping:
    @pytest.mark.parametrize("platform", MAPPING_PLATFORMS)
    async def test_before_the_smb_allows_access_there_is_nothing_to_choose(self, client, user, platform):
        await connect(client, user, platform)

        body = refused(await client.get("/v1/bank-feed/mapping", headers=user), 409, "not_authorized")

        assert "GET /v1/bank-feed/link" in body["detail"]

    async def test_each_account_with_the_accounts_it_may_feed(self, client, user):
        await allowed_xero(client, user)

        response = await client.get("/v1/bank-feed/mapping", headers=user)

        assert response.headers["cache-control"] == "no-store"
        [account] = response.json()["accounts"]
        assert {
            k: account[k] for k in ("accountId", "accountType", "currency", "status", "targetAccount")
        } == {
            "accountId": "acc-1",
            "accountType": "checking",
            "currency": "USD",
            "status": "pending",
            "targetAccount": None,
        }
        assert [o["name"] for o in account["options"]] == ["USD Account"]

    async def test_mapping_records_the_target_and_answers_the_account(self, client, user, sandbox):
        await allowed_xero(client, user)
        [account] = (await client.get("/v1/bank-feed/mapping", headers=user)).json()["accounts"]
        target = account["options"][0]

        mapped = await client.post(
            "/v1/bank-feed/accounts/acc-1/mapping", json={"targetAccountId": target["id"]}, headers=user
        )

        assert mapped.status_code == 200, mapped.text
        assert mapped.json()["targetAccount"] == {"id": target["id"], "name": "USD Account"}
        assert mapped.json()["status"] == "connecting"
        view = (await client.get("/v1/bank-feed", headers=user)).json()
        assert view["action"] == "none"
        assert view["accounts"][0]["targetAccount"] == {"id": target["id"], "name": "USD Account"}

    async def test_a_target_in_another_currency_is_refused_before_codat_hears_of_it(
        self, client, user, sandbox
    ):
        out = await allowed_xero(client, user)
        books = (await client.get(f"/sandbox/_sandbox/connections/{out['connectionId']}/books")).json()
        pounds = next(a for a in books["accounts"] if a["currency"] == "GBP" and a["kind"] == "bank")

        response = await client.post(
            "/v1/bank-feed/accounts/acc-1/mapping", json={"targetAccountId": pounds["id"]}, headers=user
        )

        body = refused(response, 422, "validation_error")
        [field] = body["fields"]
        assert field["field"] == "targetAccountId"
        assert "Xero offers only bank accounts in USD" in field["reason"]
        assert sandbox.counters.get("create-bank-account-mapping", 0) == 0
        view = (await client.get("/v1/bank-feed", headers=user)).json()
        assert (view["accounts"][0]["targetAccount"], view["action"]) == (None, "map_accounts")

    async def test_a_new_account_in_a_foreign_currency_is_refused_before_codat_hears_of_it(
        self, client, user, sandbox
    ):
        out = await allowed_xero(client, user)
        books_path = f"/sandbox/_sandbox/connections/{out['connectionId']}/books"
        books = (await client.get(books_path)).json()
        await client.put(books_path, json={**books, "multicurrencyEnabled": False})

        response = await client.post(
            "/v1/bank-feed/accounts/acc-1/mapping", json={"targetAccountId": None}, headers=user
        )

        body = refused(response, 422, "validation_error")
        assert [f["field"] for f in body["fields"]] == ["accountId"]
        assert "without multicurrency, so it cannot make a new USD account" in body["fields"][0]["reason"]
        assert sandbox.counters.get("create-bank-account-mapping", 0) == 0  # known from bankFeeds/info

    async def test_null_makes_a_new_account_in_the_books(self, client, user, sandbox):
        await allowed_xero(client, user)

        mapped = await client.post(
            "/v1/bank-feed/accounts/acc-1/mapping",
            json={"targetAccountId": None, "feedStartDate": str(sandbox.clock.now().date())},
            headers=user,
        )

        assert mapped.status_code == 200, mapped.text
        assert mapped.json()["targetAccount"]["id"]
        [account] = (await client.get("/v1/bank-feed/mapping", headers=user)).json()["accounts"]
        assert account["targetAccount"]["id"] == mapped.json()["targetAccount"]["id"]

    async def test_the_target_must_be_named_even_as_null(self, client, user):
        await allowed_xero(client, user)

        response = await client.post("/v1/bank-feed/accounts/acc-1/mapping", json={}, headers=user)

        body = refused(response, 422, "validation_error")
        assert [f["field"] for f in body["fields"]] == ["body.targetAccountId"]

    async def test_an_account_not_on_the_feed_is_not_found(self, client, user):
        await allowed_xero(client, user)

        response = await client.post(
            "/v1/bank-feed/accounts/acc-9/mapping", json={"targetAccountId": None}, headers=user
        )

        refused(response, 404, "account_not_found")
