"""Idempotency-Key on our own POST/PATCH endpoints: replay, refuse another body, refuse while in flight."""

import asyncio


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


async def _after(seconds: float, awaitable):  # type: ignore[no-untyped-def]
    await asyncio.sleep(seconds)
    return await awaitable
