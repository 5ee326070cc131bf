"""No duplicate at Codat, nothing lost here, and a retryable answer whenever Codat fails."""

import asyncio
import logging

import httpx
import pytest
from sqlalchemy import select

from app.bankfeed.models import Business, FeedAccount, FeedConnection
from app.bankfeed.repository import BankFeedRepository
from app.main import create_app
from app.observability import configure_logging
from tests.contract import contract_checked
from tests.factories import ACCOUNTS, CODAT_AUTH, codat_get, register


async def codat_inventory(client: httpx.AsyncClient) -> dict[str, dict[str, list[str]]]:
    """Everything at the sandbox: company name -> connection id -> source account ids."""
    inventory: dict[str, dict[str, list[str]]] = {}
    for company in (await codat_get(client, "/companies?pageSize=5000"))["results"]:
        connections = inventory.setdefault(company["name"], {})
        for connection in company.get("dataConnections") or []:
            path = (
                f"/companies/{company['id']}/connections/{connection['id']}/connectionInfo/bankFeedAccounts"
            )
            connections[connection["id"]] = sorted(a["id"] for a in await codat_get(client, path))
    return inventory


async def connect_until_done(
    client: httpx.AsyncClient, headers: dict[str, str], attempts: int = 40
) -> httpx.Response:
    """What a well-behaved app does: retry a retryable answer after Retry-After."""
    for _ in range(attempts):
        response = await client.post("/v1/bank-feed/connect", headers=headers)
        if response.status_code == 200:
            return response
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "upstream_unavailable"
        await asyncio.sleep(min(float(response.headers["retry-after"]), 0.5))
    raise AssertionError("never succeeded")


class TestConcurrentConnects:
    async def test_a_hundred_identical_connects_on_two_replicas_create_everything_once(
        self, app, client, settings, sandbox_app, service_headers, user_headers, business
    ):
        replica = create_app(settings, sandbox_app=contract_checked(sandbox_app))
        async with (
            replica.router.lifespan_context(replica),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://test") as other,
        ):
            responses = await asyncio.gather(
                *(
                    c.post("/v1/bank-feed/connect", headers=user_headers(business))
                    for c in [client, other] * 50
                )
            )

        assert [r.status_code for r in responses if r.status_code != 200] == []
        assert len({r.json()["connectionId"] for r in responses}) == 1
        inventory = await codat_inventory(client)
        assert inventory == {f"{business} LLC": {responses[0].json()["connectionId"]: sorted(ACCOUNTS)}}


class TestFaults:
    @pytest.fixture
    def settings(self, settings):
        settings.codat.max_attempts = 3
        settings.codat.circuit_breaker_cooldown_seconds = 0.5
        return settings

    async def test_fifty_businesses_onboard_through_errors_timeouts_and_429s(
        self, client, sandbox, service_headers, user_headers, app
    ):
        businesses = [f"biz-{n:02d}" for n in range(50)]
        for business_id in businesses:
            await register(client, service_headers(), business_id)
        sandbox.set_knobs(
            errorRate=0.3, timeoutRate=0.1, timeoutSeconds=0.05, rateLimitRate=0.1, retryAfterSeconds=0
        )

        responses = await asyncio.gather(*(connect_until_done(client, user_headers(b)) for b in businesses))
        sandbox.set_knobs(errorRate=0, timeoutRate=0, rateLimitRate=0)

        inventory = await codat_inventory(client)
        assert sorted(inventory) == sorted(f"{b} LLC" for b in businesses)
        for business_id, response in zip(businesses, responses, strict=True):
            assert inventory[f"{business_id} LLC"] == {response.json()["connectionId"]: sorted(ACCOUNTS)}
        await assert_no_orphans(app, expected_businesses=50)


async def assert_no_orphans(app, expected_businesses: int) -> None:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        businesses = (await session.scalars(select(Business))).all()
        connections = (await session.scalars(select(FeedConnection))).all()
        accounts = (await session.scalars(select(FeedAccount))).all()
    assert len(businesses) == expected_businesses
    assert all(b.codat_company_id for b in businesses)
    assert len(connections) == expected_businesses
    assert all(c.codat_connection_id and c.is_current for c in connections)
    assert len(accounts) == expected_businesses * len(ACCOUNTS)
    assert all(a.registered for a in accounts)


class TestResume:
    async def test_a_failure_between_company_and_connection_resumes_without_creating_twice(
        self, client, sandbox, user_headers, business, app
    ):
        sandbox.set_knobs(errorRate=1.0, operations=["create-connection"])

        failed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        inventory_after_failure = await codat_inventory(client)
        sandbox.set_knobs(errorRate=0.0, operations=[])
        resumed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        assert failed.status_code == 503
        assert int(failed.headers["retry-after"]) >= 1
        assert list(inventory_after_failure.values()) == [{}]
        assert resumed.status_code == 200
        assert sandbox.counters["create-company"] == 1
        assert await codat_inventory(client) == {
            f"{business} LLC": {resumed.json()["connectionId"]: sorted(ACCOUNTS)}
        }
        await assert_no_orphans(app, expected_businesses=1)

    async def test_a_failure_recording_the_accounts_intents_keeps_the_company_and_calls_nothing_more(
        self, client, sandbox, user_headers, business, app, monkeypatch
    ):
        # The accounts' intents are recorded while Codat makes the company: if they fail, the company made
        # meanwhile is still recorded, and neither the connection nor any account is asked for.
        async def database_down(*_args: object) -> None:
            raise ConnectionError("the database went away")

        with monkeypatch.context() as patched:
            patched.setattr(BankFeedRepository, "add_feed_account_intents", database_down)
            failed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        async with app.state.sessionmaker() as session:
            recorded_company = await session.scalar(select(Business.codat_company_id))
        calls_after_failure = dict(sandbox.counters)
        resumed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        assert failed.status_code == 503
        assert recorded_company in sandbox.companies
        assert "create-connection" not in calls_after_failure
        assert not any("source-account" in operation for operation in calls_after_failure)
        assert resumed.status_code == 200
        assert len(sandbox.companies) == 1
        assert await codat_inventory(client) == {
            f"{business} LLC": {resumed.json()["connectionId"]: sorted(ACCOUNTS)}
        }
        await assert_no_orphans(app, expected_businesses=1)

    async def test_a_failure_at_the_accounts_keeps_company_and_connection_and_a_retry_makes_neither_again(
        self, client, sandbox, user_headers, business, app
    ):
        sandbox.set_knobs(errorRate=1.0, operations=["create-batch-source-account"])

        failed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        view = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()
        sandbox.set_knobs(errorRate=0.0, operations=[])
        resumed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        assert failed.status_code == 503
        assert view["connection"]["connectionId"] is not None  # recorded though the chain failed after it
        assert [a["status"] for a in view["accounts"]] == ["not_added"] * len(ACCOUNTS)
        assert resumed.status_code == 200
        assert resumed.json()["connectionId"] == view["connection"]["connectionId"]
        assert (sandbox.counters["create-company"], sandbox.counters["create-connection"]) == (1, 1)
        assert await codat_inventory(client) == {
            f"{business} LLC": {resumed.json()["connectionId"]: sorted(ACCOUNTS)}
        }
        await assert_no_orphans(app, expected_businesses=1)

    async def test_accounts_made_at_codat_whose_answer_was_lost_are_replayed_on_retry_not_made_twice(
        self, client, sandbox, user_headers, business, app
    ):
        sandbox.set_knobs(timeoutRate=1.0, timeoutSeconds=0, operations=["create-batch-source-account"])
        lost = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        made_before_retry = await codat_inventory(client)
        sandbox.set_knobs(timeoutRate=0.0, operations=[])

        resumed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        assert lost.status_code == 503
        assert list(made_before_retry.values()) == [{resumed.json()["connectionId"]: sorted(ACCOUNTS)}]
        assert resumed.status_code == 200
        assert [a["status"] for a in resumed.json()["accounts"]] == ["pending"] * len(ACCOUNTS)
        assert await codat_inventory(client) == made_before_retry
        await assert_no_orphans(app, expected_businesses=1)


@pytest.fixture
def production_logging(caplog):  # type: ignore[no-untyped-def]
    """The service's own logging set-up, at DEBUG (what an operator chasing a problem runs), seen by caplog"""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("DEBUG")
    root.addHandler(caplog.handler)
    yield
    root.handlers, _ = saved
    root.setLevel(saved[1])


@pytest.mark.usefixtures("production_logging")
class TestSecretsStayOutOfLogs:
    async def test_no_api_key_otp_link_or_credential_is_logged(
        self, client, sandbox, user_headers, business, caplog
    ):
        caplog.set_level(logging.DEBUG, logger="app")
        sandbox.set_knobs(errorRate=0.3, rateLimitRate=0.2, retryAfterSeconds=0)

        connected = await connect_until_done(client, user_headers(business))
        sandbox.set_knobs(errorRate=0, rateLimitRate=0)
        sandbox.clock.advance(3600)
        link = (await client.get("/v1/bank-feed/link", headers=user_headers(business))).json()
        credentials = (await client.post("/v1/bank-feed/credentials", headers=user_headers(business))).json()

        logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
        secrets = [
            CODAT_AUTH["Authorization"].split()[1],
            "test-sandbox-key",
            connected.json()["linkUrl"],
            "otp=" + connected.json()["linkUrl"].rsplit("otp=", 1)[1],
            link["linkUrl"],
            "otp=" + link["linkUrl"].rsplit("otp=", 1)[1],
            credentials["password"],
        ]
        assert "codat.retry" in logged  # the failures were logged
        assert [s for s in secrets if s in logged] == []


class TestReconcile:
    async def test_a_connection_deleted_at_codat_is_kept_as_history_and_recreated_with_the_same_accounts(
        self, app, client, user_headers, business, sandbox
    ):
        old = (
            await client.post(
                "/v1/bank-feed/connect",
                json={"accountIds": ["acc-1", "acc-2"]},
                headers=user_headers(business),
            )
        ).json()
        company_id = next(iter(sandbox.companies))
        deleted = await client.delete(
            f"/sandbox/companies/{company_id}/connections/{old['connectionId']}", headers=CODAT_AUTH
        )
        sandbox.clock.advance(3600)

        link = await client.get("/v1/bank-feed/link", headers=user_headers(business))

        assert deleted.status_code == 200
        assert link.status_code == 200
        new_id = link.json()["connectionId"]
        assert new_id != old["connectionId"]
        assert (await codat_inventory(client))[f"{business} LLC"] == {new_id: ["acc-1", "acc-2"]}
        async with app.state.sessionmaker() as session:
            rows = {
                c.codat_connection_id: (c.is_current, c.status)
                for c in (await session.scalars(select(FeedConnection))).all()
            }
        assert rows[old["connectionId"]] == (False, "Deleted")

    async def test_the_scheduled_round_applies_what_a_missed_webhook_would_have(
        self, app, client, user_headers, business
    ):
        from datetime import timedelta

        from app.onboarding.dependencies import onboarding_service
        from app.webhooks.reconcile import reconcile_once
        from app.webhooks.service import WebhookProcessor
        from tests.factories import connect_in_quickbooks

        connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
        await connect_in_quickbooks(
            client, connected["linkUrl"], ["acc-1"]
        )  # no webhook consumer: nothing arrives
        before = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()

        refreshed = await reconcile_once(
            onboarding_service(app).sync,
            WebhookProcessor(app.state.sessionmaker, app.state.changes),
            timedelta(0),
        )
        after = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()

        assert before["connection"]["status"] == "PendingAuth"
        assert refreshed == 1
        assert after["connection"]["status"] == "Linked"
        assert after["connectedCount"] == 1
        assert after["stateConfirmedAt"] is not None


class TestLinkAcrossReplicas:
    async def test_a_lapsed_link_is_read_once_from_codat_however_many_replicas_ask(
        self, client, settings, sandbox_app, sandbox, user_headers, business
    ):
        await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        sandbox.clock.advance(3600)
        replica = create_app(settings, sandbox_app=contract_checked(sandbox_app))
        async with (
            replica.router.lifespan_context(replica),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://test") as other,
        ):
            responses = await asyncio.gather(
                *(c.get("/v1/bank-feed/link", headers=user_headers(business)) for c in [client, other] * 25)
            )

        assert {r.status_code for r in responses} == {200}
        assert len({r.json()["linkUrl"] for r in responses}) == 1
        assert sandbox.counters["get-connection"] == 1


class TestLostAnswers:
    async def test_a_company_created_but_never_acknowledged_is_found_by_its_tag_not_created_again(
        self, client, sandbox, user_headers, business, app
    ):
        sandbox.set_knobs(timeoutRate=1.0, timeoutSeconds=0, operations=["create-company"])
        lost = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        sandbox.set_knobs(timeoutRate=0.0, operations=[])
        sandbox.clock.advance(
            61
        )  # Codat's idempotency replay aside: long enough that no request is in flight

        resumed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        assert lost.status_code == 503
        assert resumed.status_code == 200
        assert sandbox.counters["list-companies"] == 1
        assert await codat_inventory(client) == {
            f"{business} LLC": {resumed.json()["connectionId"]: sorted(ACCOUNTS)}
        }
        await assert_no_orphans(app, expected_businesses=1)

    async def test_a_connection_created_but_never_acknowledged_is_adopted_not_created_again(
        self, client, sandbox, user_headers, business, app
    ):
        sandbox.set_knobs(timeoutRate=1.0, timeoutSeconds=0, operations=["create-connection"])
        lost = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        sandbox.set_knobs(timeoutRate=0.0, operations=[])
        sandbox.clock.advance(61)

        resumed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        assert lost.status_code == 503
        assert resumed.status_code == 200
        assert sandbox.counters["list-connections"] == 1
        assert await codat_inventory(client) == {
            f"{business} LLC": {resumed.json()["connectionId"]: sorted(ACCOUNTS)}
        }
        await assert_no_orphans(app, expected_businesses=1)

    async def test_an_abandoned_connection_step_that_created_nothing_starts_again_under_a_new_key(
        self, client, sandbox, user_headers, business, app
    ):
        sandbox.set_knobs(errorRate=1.0, operations=["create-connection"])
        failed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        sandbox.set_knobs(errorRate=0.0, operations=[])
        sandbox.clock.advance(61)

        resumed = await client.post("/v1/bank-feed/connect", headers=user_headers(business))

        assert failed.status_code == 503
        assert resumed.status_code == 200
        assert await codat_inventory(client) == {
            f"{business} LLC": {resumed.json()["connectionId"]: sorted(ACCOUNTS)}
        }
        await assert_no_orphans(app, expected_businesses=1)
