"""Idempotency-Key on our own POST/PATCH endpoints: replay, refuse another body, refuse while in flight."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from app.bankfeed.models import Business
from app.idempotency.models import IdempotencyRecord
from app.onboarding.connect import Connector
from tests.factories import ACCOUNTS
from tests.onboarding.test_resilience import codat_inventory
from tests.test_secrets_under_failure import kill_connection_when


class TestIdempotencyKey:
    async def test_the_same_key_replays_the_first_answer_without_calling_codat_again(
        self, client, user_headers, business, sandbox
    ):
        headers = {**user_headers(business), "Idempotency-Key": "connect-1"}

        first = await client.post("/v1/bank-feed/connect", headers=headers)
        calls = dict(sandbox.counters)
        second = await client.post("/v1/bank-feed/connect", headers=headers)

        assert second.status_code == first.status_code == 200
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert dict(sandbox.counters) == calls

    async def test_the_same_key_with_another_body_is_a_422(self, client, user_headers, business):
        headers = {**user_headers(business), "Idempotency-Key": "add-1"}
        await client.post(
            "/v1/bank-feed/connect", json={"accountIds": ["acc-1"]}, headers=user_headers(business)
        )

        first = await client.post("/v1/bank-feed/accounts", json={"accountIds": ["acc-2"]}, headers=headers)
        other = await client.post("/v1/bank-feed/accounts", json={"accountIds": ["acc-3"]}, headers=headers)

        assert first.status_code == 200
        assert other.status_code == 422
        assert other.json()["error"] == "idempotency_key_reused"
        view = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()
        assert {a["accountId"]: a["status"] for a in view["accounts"]}["acc-3"] == "not_added"

    async def test_while_the_first_is_in_flight_the_second_gets_a_409(
        self, client, user_headers, business, sandbox
    ):
        headers = {**user_headers(business), "Idempotency-Key": "slow-1"}
        sandbox.set_knobs(latencyMs=300)

        first, second = await asyncio.gather(
            client.post("/v1/bank-feed/connect", headers=headers),
            _after(0.1, client.post("/v1/bank-feed/connect", headers=headers)),
        )

        assert first.status_code == 200
        assert second.status_code == 409
        assert second.json()["error"] == "idempotency_key_in_flight"
        assert second.headers["retry-after"] == "1"

    async def test_keys_belong_to_one_caller(self, client, service_headers, user_headers, business):
        from tests.factories import register

        await register(client, service_headers(), "biz-2")
        mine = await client.post(
            "/v1/bank-feed/connect", headers={**user_headers(business), "Idempotency-Key": "k"}
        )
        theirs = await client.post(
            "/v1/bank-feed/connect", headers={**user_headers("biz-2"), "Idempotency-Key": "k"}
        )

        assert mine.status_code == theirs.status_code == 200
        assert mine.json()["connectionId"] != theirs.json()["connectionId"]
        assert "idempotent-replayed" not in theirs.headers

    async def test_a_retryable_failure_is_not_kept_so_the_retry_runs(
        self, client, user_headers, business, sandbox
    ):
        headers = {**user_headers(business), "Idempotency-Key": "flaky-1"}
        sandbox.set_knobs(errorRate=1.0, operations=["create-company"])
        failed = await client.post("/v1/bank-feed/connect", headers=headers)
        sandbox.set_knobs(errorRate=0.0, operations=[])

        retried = await client.post("/v1/bank-feed/connect", headers=headers)

        assert failed.status_code == 503
        assert retried.status_code == 200
        assert "idempotent-replayed" not in retried.headers


class TestConnectClaimsItsKeyInItsOwnTransactions:
    """Connect claims the key with its intents and keeps its answer with its outcomes (no commits of their
    own): what the route would do otherwise must still hold."""

    async def test_a_failure_after_the_claim_is_not_kept_and_the_retry_makes_nothing_twice(
        self, client, user_headers, business, sandbox
    ):
        headers = {**user_headers(business), "Idempotency-Key": "late-failure"}
        sandbox.set_knobs(errorRate=1.0, operations=["create-batch-source-account"])
        failed = await client.post("/v1/bank-feed/connect", headers=headers)
        sandbox.set_knobs(errorRate=0.0, operations=[])

        retried = await client.post("/v1/bank-feed/connect", headers=headers)
        replayed = await client.post("/v1/bank-feed/connect", headers=headers)

        assert failed.status_code == 503
        assert retried.status_code == 200
        assert "idempotent-replayed" not in retried.headers
        assert (sandbox.counters["create-company"], sandbox.counters["create-connection"]) == (1, 1)
        assert await codat_inventory(client) == {
            f"{business} LLC": {retried.json()["connectionId"]: sorted(ACCOUNTS)}
        }
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == retried.content

    async def test_a_retry_after_a_crash_mid_connect_resumes_without_making_anything_twice(
        self, app, client, user_headers, business, sandbox, monkeypatch
    ):
        headers = {**user_headers(business), "Idempotency-Key": "crash-1"}

        async def crash(*_args: object) -> None:  # the process dies after the calls, before recording
            raise RuntimeError("crashed")

        with monkeypatch.context() as patched:
            patched.setattr(Connector, "_record_outcomes", crash)
            crashed = await client.post("/v1/bank-feed/connect", headers=headers)
        while_claimed = await client.post("/v1/bank-feed/connect", headers=headers)
        async with app.state.sessionmaker.begin() as session:  # the crashed request's lease lapses
            await session.execute(
                update(IdempotencyRecord).values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        resumed = await client.post("/v1/bank-feed/connect", headers=headers)
        replayed = await client.post("/v1/bank-feed/connect", headers=headers)

        assert crashed.status_code == 500
        assert while_claimed.status_code == 409
        assert resumed.status_code == 200
        assert "idempotent-replayed" not in resumed.headers
        assert (len(sandbox.companies), len(sandbox.connections)) == (1, 1)  # Codat replayed the calls
        assert await codat_inventory(client) == {
            f"{business} LLC": {resumed.json()["connectionId"]: sorted(ACCOUNTS)}
        }
        assert [a["status"] for a in resumed.json()["accounts"]] == ["pending"] * len(ACCOUNTS)
        assert replayed.content == resumed.content

    @pytest.mark.parametrize(
        ("lost_at", "outcomes_kept", "answered"),
        [("WITH WRITE_0", False, 503), ("UPDATE IDEMPOTENCY_RECORD", True, 200)],
        ids=["recording-the-outcomes", "keeping-the-answer-once-sent"],
    )
    async def test_the_database_lost_at_the_end_of_connect_is_mended_by_the_retry(
        self, app, client, user_headers, business, sandbox, settings, lost_at, outcomes_kept, answered
    ):
        if settings.uses_sqlite:
            pytest.skip("needs Postgres (TEST_DATABASE_URL): a server process to terminate")
        headers = {**user_headers(business), "Idempotency-Key": "lost-1"}
        # Connect records what Codat made in one statement; the route keeps its answer once sent: the
        # connection dies under one or the other.
        kill_connection_when(app.state.sessionmaker.kw["bind"], lost_at, settings.database.url)

        lost = await client.post("/v1/bank-feed/connect", headers=headers)
        async with app.state.sessionmaker.begin() as session:
            recorded = await session.get(Business, business)
            assert recorded is not None
            company_after_loss = recorded.codat_company_id
            # the lost request's lease lapses
            await session.execute(
                update(IdempotencyRecord).values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        calls = dict(sandbox.counters)
        retried = await client.post("/v1/bank-feed/connect", headers=headers)
        replayed = await client.post("/v1/bank-feed/connect", headers=headers)

        assert lost.status_code == answered
        assert (company_after_loss is not None) is outcomes_kept  # the statement is whole or not at all
        assert retried.status_code == 200
        assert "idempotent-replayed" not in retried.headers  # the answer was not kept
        if outcomes_kept:  # the retry had nothing left to ask Codat
            assert dict(sandbox.counters) == calls
        assert (len(sandbox.companies), len(sandbox.connections)) == (1, 1)  # Codat replayed the calls
        assert await codat_inventory(client) == {
            f"{business} LLC": {retried.json()["connectionId"]: sorted(ACCOUNTS)}
        }
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == retried.content

    async def test_a_refusal_before_any_write_is_kept_and_replayed(self, client, user_headers, business):
        headers = {**user_headers(business), "Idempotency-Key": "unknown-account"}
        body = {"accountIds": ["acc-unknown"]}

        first = await client.post("/v1/bank-feed/connect", json=body, headers=headers)
        second = await client.post("/v1/bank-feed/connect", json=body, headers=headers)

        assert first.status_code == second.status_code == 422
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()

    async def test_concurrent_connects_with_different_keys_share_one_onboarding_and_each_key_replays(
        self, client, user_headers, business, sandbox
    ):
        sandbox.set_knobs(latencyMs=100)
        first, second = await asyncio.gather(
            client.post("/v1/bank-feed/connect", headers={**user_headers(business), "Idempotency-Key": "a"}),
            _after(
                0.05,
                client.post(
                    "/v1/bank-feed/connect", headers={**user_headers(business), "Idempotency-Key": "b"}
                ),
            ),
        )
        sandbox.set_knobs(latencyMs=0)
        replays = [
            await client.post(
                "/v1/bank-feed/connect", headers={**user_headers(business), "Idempotency-Key": key}
            )
            for key in ("a", "b")
        ]

        assert first.status_code == second.status_code == 200
        assert first.json()["connectionId"] == second.json()["connectionId"]
        assert (sandbox.counters["create-company"], sandbox.counters["create-connection"]) == (1, 1)
        assert [r.headers["idempotent-replayed"] for r in replays] == ["true", "true"]
        assert [r.content for r in replays] == [first.content, second.content]


async def _after(seconds: float, awaitable):  # type: ignore[no-untyped-def]
    await asyncio.sleep(seconds)
    return await awaitable
