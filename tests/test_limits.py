"""Limits: a business that floods credential mints is stopped before Codat; another business is not; replicas
share the count (Redis); streams are capped; bodies are bounded."""

import asyncio
import uuid

import httpx
import pytest
from limits import parse

from app.config import Settings
from app.main import create_app
from tests.contract import contract_checked
from tests.factories import register

REDIS_URL = "redis://127.0.0.1:6379/13"  # this helper's Redis database


def allowed(settings: Settings) -> int:
    return parse(settings.limits.credentials_per_business).amount


async def mint(client: httpx.AsyncClient, headers: dict[str, str], times: int) -> list[httpx.Response]:
    return list(
        await asyncio.gather(
            *(client.post("/v1/bank-feed/credentials", headers=headers) for _ in range(times))
        )
    )


async def test_a_hundred_mints_in_a_second_the_first_n_pass_codat_sees_n_another_business_is_unaffected(
    client, sandbox, settings, user_headers, service_headers, business
):
    await register(client, service_headers(), "biz-2")
    for who in (business, "biz-2"):
        assert (await client.post("/v1/bank-feed/connect", headers=user_headers(who))).status_code == 200
    n = allowed(settings)
    minted_before = sandbox.counters["generate-credentials"]

    answers = await mint(client, user_headers(business), 100)

    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == n
    assert statuses.count(429) == 100 - n
    refused = [a for a in answers if a.status_code == 429]
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
    assert {a.json()["error"] for a in refused} == {"rate_limited"}
    assert sandbox.counters["generate-credentials"] - minted_before == n  # Codat saw exactly N
    other = await client.post("/v1/bank-feed/credentials", headers=user_headers("biz-2"))
    assert other.status_code == 200


async def test_a_refused_mint_is_not_kept_under_its_idempotency_key(client, settings, user_headers, business):
    await client.post("/v1/bank-feed/connect", headers=user_headers(business))
    await mint(client, user_headers(business), allowed(settings))

    refused = await client.post(
        "/v1/bank-feed/credentials", headers={**user_headers(business), "Idempotency-Key": "k-429"}
    )
    again = await client.post(
        "/v1/bank-feed/credentials", headers={**user_headers(business), "Idempotency-Key": "k-429"}
    )

    assert refused.status_code == 429
    assert "idempotent-replayed" not in again.headers


@pytest.fixture
def redis_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"limits": settings.limits.model_copy(update={"storage_url": REDIS_URL})}
    )


async def test_two_replicas_share_the_limit_through_redis(
    redis_settings, sandbox_app, user_headers, service_headers
):
    business = f"biz-{uuid.uuid4().hex[:8]}"  # fresh counters: Redis outlives the test
    replicas = [create_app(redis_settings, sandbox_app=contract_checked(sandbox_app)) for _ in range(2)]
    async with (
        replicas[0].router.lifespan_context(replicas[0]),
        replicas[1].router.lifespan_context(replicas[1]),
    ):
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=r), base_url="http://test") for r in replicas
        ]
        await register(clients[0], service_headers(), business)
        await clients[0].post("/v1/bank-feed/connect", headers=user_headers(business))

        answers = await asyncio.gather(
            *(c.post("/v1/bank-feed/credentials", headers=user_headers(business)) for c in clients * 10)
        )
        for c in clients:
            await c.aclose()

    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == allowed(redis_settings)
    assert statuses.count(429) == 20 - allowed(redis_settings)


async def test_event_streams_are_capped_per_business(app, client, settings, user_headers, business):
    cap = settings.limits.event_streams_per_business
    limiter = app.state.limiter

    async def forever():  # type: ignore[no-untyped-def]
        while True:
            yield ": keep-alive\n\n"
            await asyncio.sleep(1)

    held = [await limiter.stream(business, forever()) for _ in range(cap)]
    refused = await client.get("/v1/bank-feed/events", headers=user_headers(business))
    other = await limiter.stream("biz-other", forever())

    assert refused.status_code == 429
    assert refused.headers["retry-after"]
    assert other is not None
    for stream in held:
        await anext(stream)
        await stream.aclose()  # a closed stream frees its place
    freed = await limiter.stream(business, forever())
    assert freed is not None


async def test_a_rate_limit_store_that_is_down_refuses_retryably_and_codat_is_not_called(
    client, settings, sandbox_app, sandbox, user_headers, service_headers
):
    await register(client, service_headers(), "biz-down")
    down = settings.model_copy(
        update={"limits": settings.limits.model_copy(update={"storage_url": "redis://127.0.0.1:1/0"})}
    )
    app = create_app(down, sandbox_app=contract_checked(sandbox_app))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as replica,
    ):
        calls_before = sum(sandbox.counters.values())
        response = await replica.post("/v1/bank-feed/connect", headers=user_headers("biz-down"))

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert sum(sandbox.counters.values()) == calls_before


def codat_calls_allowed(settings: Settings) -> int:
    return parse(settings.limits.codat_calls_per_business).amount


async def test_a_stored_link_is_served_however_often_and_a_burst_for_a_lapsed_one_counts_once(
    client, sandbox, settings, user_headers, business
):
    """The limit guards Codat: a stored link calls nobody, and requests waiting on one refresh share it.
    (`/link/redirect` always takes the route; `/link` may be answered before it, uncounted either way.)"""
    await client.post("/v1/bank-feed/connect", headers=user_headers(business))
    over = codat_calls_allowed(settings) + 20
    sandbox.clock.advance(7200)  # the stored link has lapsed: the first request reads a new one from Codat

    burst = await asyncio.gather(
        *(client.get("/v1/bank-feed/link/redirect", headers=user_headers(business)) for _ in range(over))
    )
    polled = [
        await client.get("/v1/bank-feed/link/redirect", headers=user_headers(business)) for _ in range(over)
    ]

    assert {r.status_code for r in burst + polled} == {302}
    assert len({r.headers["location"] for r in burst + polled}) == 1
    assert sandbox.counters["get-connection"] == 1


async def test_each_refresh_of_a_lapsed_link_counts_and_one_over_the_limit_is_refused_before_codat(
    client, sandbox, settings, user_headers, business
):
    await client.post("/v1/bank-feed/connect", headers=user_headers(business))
    allowed_calls = codat_calls_allowed(settings) - 1  # connect counted one
    for _ in range(allowed_calls):
        sandbox.clock.advance(7200)
        assert (
            await client.get("/v1/bank-feed/link/redirect", headers=user_headers(business))
        ).status_code == 302
    reads = sandbox.counters["get-connection"]
    sandbox.clock.advance(7200)

    refused = await client.get("/v1/bank-feed/link/redirect", headers=user_headers(business))

    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert sandbox.counters["get-connection"] == reads == allowed_calls
