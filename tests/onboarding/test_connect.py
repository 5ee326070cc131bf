"""The end-user onboarding API, against the embedded sandbox as Codat."""

import asyncio

import pytest

from tests.factories import ACCOUNTS, codat_accounts, otp_of, register


def creates(sandbox) -> dict[str, int]:  # type: ignore[no-untyped-def]
    names = ("create-company", "create-connection", "create-source-account", "create-batch-source-account")
    return {name: sandbox.counters.get(name, 0) for name in names}


class TestConnect:
    async def test_creates_company_connection_and_accounts_and_answers_a_link(
        self, client, user_headers, business, sandbox
    ):
        response = await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        body = response.json()
        assert response.status_code == 200, body
        assert response.headers["cache-control"] == "no-store"
        assert body["linkUrl"].startswith("http://test/sandbox/")
        assert len(otp_of(body["linkUrl"])) == 6
        assert body["connectionStatus"] == "PendingAuth"
        assert [a["status"] for a in body["accounts"]] == ["pending"] * 3
        assert creates(sandbox) == {
            "create-company": 1,
            "create-connection": 1,
            "create-source-account": 0,
            "create-batch-source-account": 1,
        }
        at_codat = await codat_accounts(client, body["connectionId"])
        assert sorted(at_codat) == ["acc-1", "acc-2", "acc-3"]
        assert at_codat["acc-1"]["routingInfo"] == {"bankCode": "021000021", "type": "aba"}
        assert at_codat["acc-3"]["accountType"] == "creditCard"

    async def test_connecting_again_creates_nothing_and_answers_the_same_link(
        self, client, user_headers, business, sandbox
    ):
        first = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
        counts = dict(sandbox.counters)

        second = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()

        assert (second["connectionId"], second["linkUrl"]) == (first["connectionId"], first["linkUrl"])
        assert dict(sandbox.counters) == counts

    async def test_connects_only_the_chosen_accounts_one_at_a_time(
        self, client, user_headers, business, sandbox
    ):
        response = await client.post(
            "/v1/bank-feed/connect", json={"accountIds": ["acc-2"]}, headers=user_headers(business)
        )

        statuses = {a["accountId"]: a["status"] for a in response.json()["accounts"]}
        assert statuses == {"acc-1": "not_added", "acc-2": "pending", "acc-3": "not_added"}
        assert creates(sandbox)["create-source-account"] == 1

    async def test_an_unknown_account_is_a_422_and_nothing_is_sent_to_codat(
        self, client, user_headers, business, sandbox
    ):
        response = await client.post(
            "/v1/bank-feed/connect", json={"accountIds": ["acc-1", "acc-404"]}, headers=user_headers(business)
        )

        assert response.status_code == 422
        assert response.json()["fields"] == [
            {"field": "accountIds.1", "reason": "no bank account 'acc-404' is registered"}
        ]
        assert sum(creates(sandbox).values()) == 0

    async def test_a_business_nobody_registered_is_a_404(self, client, user_headers, sandbox):
        response = await client.post("/v1/bank-feed/connect", headers=user_headers("ghost"))

        assert response.status_code == 404
        assert response.json()["error"] == "business_not_found"
        assert sum(creates(sandbox).values()) == 0


class TestLink:
    async def test_before_connect_there_is_no_link(self, client, user_headers, business):
        response = await client.get("/v1/bank-feed/link", headers=user_headers(business))

        assert response.status_code == 409
        assert response.json()["error"] == "not_connected"

    async def test_serves_the_stored_link_while_it_has_time_left(
        self, client, user_headers, business, sandbox
    ):
        connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
        sandbox.clock.advance(3600 - 301)

        link = await client.get("/v1/bank-feed/link", headers=user_headers(business))

        assert link.json()["linkUrl"] == connected["linkUrl"]
        assert link.headers["cache-control"] == "no-store"
        assert sandbox.counters.get("get-connection", 0) == 0

    async def test_mints_a_fresh_link_when_the_stored_one_is_within_the_safety_margin(
        self, client, user_headers, business, sandbox
    ):
        connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
        sandbox.clock.advance(3600 - 200)  # still valid at Codat, but less than the 5-minute margin left

        link = (await client.get("/v1/bank-feed/link", headers=user_headers(business))).json()
        again = (await client.get("/v1/bank-feed/link", headers=user_headers(business))).json()

        assert otp_of(link["linkUrl"]) != otp_of(connected["linkUrl"])
        assert link["expiresAt"] > connected["expiresAt"]
        assert again["linkUrl"] == link["linkUrl"]
        assert sandbox.counters["get-connection"] == 1

    async def test_fifty_concurrent_requests_for_a_lapsed_link_share_one_upstream_read(
        self, client, user_headers, business, sandbox
    ):
        await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        sandbox.clock.advance(7200)

        responses = await asyncio.gather(
            *(client.get("/v1/bank-feed/link", headers=user_headers(business)) for _ in range(50))
        )

        assert {r.status_code for r in responses} == {200}
        assert len({r.json()["linkUrl"] for r in responses}) == 1
        assert sandbox.counters["get-connection"] == 1

    async def test_redirect_sends_the_browser_to_the_link(self, client, user_headers, business):
        connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()

        response = await client.get("/v1/bank-feed/link/redirect", headers=user_headers(business))

        assert response.status_code == 302
        assert response.headers["location"] == connected["linkUrl"]
        assert response.headers["cache-control"] == "no-store"


class TestCredentials:
    async def test_makes_new_credentials_each_time_and_revokes_them(
        self, client, user_headers, business, sandbox
    ):
        await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        first = await client.post("/v1/bank-feed/credentials", headers=user_headers(business))
        second = await client.post("/v1/bank-feed/credentials", headers=user_headers(business))
        revoked = await client.delete("/v1/bank-feed/credentials", headers=user_headers(business))

        assert first.status_code == second.status_code == 200
        assert first.headers["cache-control"] == "no-store"
        assert first.json()["username"] != second.json()["username"]
        assert first.json()["password"]
        assert revoked.status_code == 204
        assert sandbox.counters["generate-credentials"] == 2

    async def test_credentials_need_a_connection(self, client, user_headers, business):
        response = await client.post("/v1/bank-feed/credentials", headers=user_headers(business))

        assert response.status_code == 409


class TestAccounts:
    async def test_adding_accounts_offers_them_and_answers_a_link(
        self, client, user_headers, business, sandbox
    ):
        first = (
            await client.post(
                "/v1/bank-feed/connect", json={"accountIds": ["acc-1"]}, headers=user_headers(business)
            )
        ).json()

        added = await client.post(
            "/v1/bank-feed/accounts", json={"accountIds": ["acc-2", "acc-3"]}, headers=user_headers(business)
        )

        body = added.json()
        view = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()
        assert added.status_code == 200
        assert body["connectionId"] == first["connectionId"]
        assert [a["status"] for a in body["accounts"]] == ["pending"] * 3
        assert (body["accounts"], body["action"]) == (view["accounts"], view["action"])  # what it recorded
        assert sorted(await codat_accounts(client, body["connectionId"])) == ["acc-1", "acc-2", "acc-3"]
        assert creates(sandbox)["create-batch-source-account"] == 1

    async def test_rename_changes_the_name_here_and_at_codat(self, client, user_headers, business):
        connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()

        response = await client.patch(
            "/v1/bank-feed/accounts/acc-1",
            json={"accountName": "Main account"},
            headers=user_headers(business),
        )

        assert response.status_code == 200
        assert response.json()["accountName"] == "Main account"
        assert (await codat_accounts(client, connected["connectionId"]))["acc-1"][
            "accountName"
        ] == "Main account"

    async def test_rename_before_connect_changes_only_our_record(
        self, client, user_headers, business, sandbox
    ):
        response = await client.patch(
            "/v1/bank-feed/accounts/acc-2", json={"accountName": "Rainy day"}, headers=user_headers(business)
        )

        assert response.json()["accountName"] == "Rainy day"
        assert sandbox.counters.get("update-source-account", 0) == 0

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"accountName": "x", "balance": 10}, "body.balance"),
            ({"accountName": "x", "status": "disconnected"}, "body.status"),
            ({"accountName": ""}, "body.accountName"),
            ({}, "body.accountName"),
        ],
    )
    async def test_rename_takes_the_name_only(self, client, user_headers, business, body, field):
        response = await client.patch(
            "/v1/bank-feed/accounts/acc-1", json=body, headers=user_headers(business)
        )

        assert response.status_code == 422
        assert field in [f["field"] for f in response.json()["fields"]]

    async def test_renaming_an_unknown_account_is_a_404(self, client, user_headers, business):
        response = await client.patch(
            "/v1/bank-feed/accounts/acc-9", json={"accountName": "x"}, headers=user_headers(business)
        )

        assert response.status_code == 404


class TestBankFeedView:
    async def test_polling_with_the_etag_gets_a_304_until_something_changes(
        self, client, user_headers, business
    ):
        first = await client.get("/v1/bank-feed", headers=user_headers(business))
        unchanged = await client.get(
            "/v1/bank-feed", headers={**user_headers(business), "If-None-Match": first.headers["etag"]}
        )
        await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        changed = await client.get(
            "/v1/bank-feed", headers={**user_headers(business), "If-None-Match": first.headers["etag"]}
        )

        assert first.status_code == 200
        assert unchanged.status_code == 304
        assert changed.status_code == 200
        assert changed.json()["connection"]["status"] == "PendingAuth"
        assert changed.json()["action"] == "finish_in_quickbooks"


class TestManyAccounts:
    """More accounts than one batch holds: the batches go to Codat at once, and a failed one loses nothing."""

    @pytest.fixture
    async def five(self, client, service_headers, business):  # type: ignore[no-untyped-def]
        for account in ("acc-4", "acc-5"):
            body = {**ACCOUNTS["acc-1"], "name": f"Account {account}"}
            added = await client.put(
                f"/internal/v1/businesses/{business}/accounts/{account}", json=body, headers=service_headers()
            )
            assert added.status_code == 201
        return business

    @pytest.fixture
    def calls(self, app, monkeypatch):  # type: ignore[no-untyped-def]
        """Batches of 2; the most account-creating calls in flight at once; the accounts whose call fails."""
        import app.onboarding.accounts as accounts_module
        from app.codat.exceptions import CodatUnavailable, UnavailableReason

        monkeypatch.setattr(accounts_module, "BATCH_SIZE", 2)
        codat = app.state.codat
        seen: dict = {"in_flight": 0, "most": 0, "fail": set()}

        def spy(create):  # type: ignore[no-untyped-def]
            async def spied(company_id, connection_id, accounts, **kwargs):  # type: ignore[no-untyped-def]
                ids = {a.id for a in accounts} if isinstance(accounts, list) else {accounts.id}
                seen["in_flight"] += 1
                seen["most"] = max(seen["most"], seen["in_flight"])
                try:
                    await asyncio.sleep(0.05)  # long enough for the others to start, were they sent at once
                    if ids & seen["fail"]:
                        raise CodatUnavailable(UnavailableReason.SERVER_ERROR, status_code=503)
                    return await create(company_id, connection_id, accounts, **kwargs)
                finally:
                    seen["in_flight"] -= 1

            return spied

        monkeypatch.setattr(codat, "create_source_accounts", spy(codat.create_source_accounts))
        monkeypatch.setattr(codat, "create_source_account", spy(codat.create_source_account))
        return seen

    async def test_the_batches_are_sent_at_once(self, client, user_headers, five, calls, sandbox):
        response = await client.post("/v1/bank-feed/connect", headers=user_headers(five))

        assert response.status_code == 200
        assert [a["status"] for a in response.json()["accounts"]] == ["pending"] * 5
        assert creates(sandbox)["create-batch-source-account"] == 2
        assert calls["most"] == 3

    async def test_a_failed_batch_keeps_the_others_and_a_retry_sends_only_it(
        self, client, user_headers, five, calls, sandbox
    ):
        calls["fail"] = {"acc-3"}
        failed = await client.post("/v1/bank-feed/connect", headers=user_headers(five))
        view = (await client.get("/v1/bank-feed", headers=user_headers(five))).json()
        calls["fail"] = set()
        retried = await client.post("/v1/bank-feed/connect", headers=user_headers(five))

        assert failed.status_code == 503
        assert {a["accountId"]: a["status"] for a in view["accounts"]} == {
            "acc-1": "pending",
            "acc-2": "pending",
            "acc-3": "not_added",
            "acc-4": "not_added",
            "acc-5": "pending",
        }
        assert retried.status_code == 200
        assert [a["status"] for a in retried.json()["accounts"]] == ["pending"] * 5
        assert creates(sandbox)["create-batch-source-account"] == 2  # acc-3 and acc-4 once, after the failure


async def test_recording_codat_answers_leaves_the_accounts_table_its_size(
    app, client, user_headers, service_headers, settings, monkeypatch
):  # type: ignore[no-untyped-def]
    """Postgres: Codat's answers update the accounts' rows where they were inserted (HOT updates), instead
    of writing every row again on new pages and in every index."""
    if settings.uses_sqlite:
        pytest.skip("HOT updates, fillfactor and page sizes are Postgres's")
    accounts = {f"acc-{n:03d}": {**ACCOUNTS["acc-1"], "name": f"Account {n}"} for n in range(300)}
    await register(client, service_headers(), "biz-many", accounts)
    codat, inserted = app.state.codat, []
    create = codat.create_source_accounts

    async def measured(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not inserted:  # the rows are in, Codat's answers not yet
            inserted.append(await heap_pages(app, "feed_account"))
        return await create(*args, **kwargs)

    monkeypatch.setattr(codat, "create_source_accounts", measured)
    response = await client.post("/v1/bank-feed/connect", headers=user_headers("biz-many"))

    assert response.status_code == 200
    assert [a["status"] for a in response.json()["accounts"]] == ["pending"] * 300
    # Written again on new pages, 300 rows took 5 more (4 -> 9 in a new table). Some room is allowed for rows
    # earlier tests left: a page they filled may not hold every second version.
    assert await heap_pages(app, "feed_account") <= 1.2 * inserted[0]


async def heap_pages(app, table: str) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    async with app.state.sessionmaker() as session:
        return int(await session.scalar(text(f"SELECT pg_relation_size('{table}') / 8192")))
