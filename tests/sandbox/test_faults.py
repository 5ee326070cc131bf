"""Injected faults and the daily quota: per operation or global, and reproducible with a seed."""

import time

import httpx
import pytest

from app.sandbox import SandboxConfig
from tests.sandbox.support import AUTH, assert_codat_error, serve_in_thread


async def company_count(sandbox) -> int:
    return len(sandbox.state.companies)


async def test_server_errors_refuse_before_anything_happens(sandbox) -> None:
    sandbox.state.set_knobs(errorRate=1)
    body = assert_codat_error(await sandbox.client.post("/companies", json={"name": "Dave"}), 500)
    assert body["canBeRetried"] == "True"
    assert await company_count(sandbox) == 0
    assert sandbox.state.counters["create-company"] == 1


async def test_rate_limits_carry_retry_after(sandbox) -> None:
    sandbox.state.set_knobs(rateLimitRate=1, retryAfterSeconds=7)
    response = await sandbox.client.get("/companies")
    assert_codat_error(response, 429)
    assert response.headers["Retry-After"] == "7"


async def test_faults_can_target_one_operation(sandbox) -> None:
    sandbox.state.set_knobs(errorRate=1, operations=["create-connection"])
    company = await sandbox.company()
    response = await sandbox.client.post(
        f"/companies/{company['id']}/connections", json={"platformKey": "hcws"}
    )
    assert_codat_error(response, 500)
    assert sandbox.state.companies[company["id"]].connections == {}


async def test_latency_is_added(sandbox) -> None:
    sandbox.state.set_knobs(latencyMs=120)
    started = time.perf_counter()
    await sandbox.client.get("/companies")
    assert time.perf_counter() - started >= 0.12


async def test_a_timeout_answers_504_after_running_the_operation(sandbox) -> None:
    sandbox.state.set_knobs(timeoutRate=1, timeoutSeconds=0.05)
    started = time.perf_counter()
    assert_codat_error(await sandbox.client.post("/companies", json={"name": "Dave"}), 504)
    assert time.perf_counter() - started >= 0.05
    assert await company_count(sandbox) == 1


def test_a_timeout_without_a_limit_hangs_until_the_client_gives_up(make_sandbox_app) -> None:
    app = make_sandbox_app()
    app.state.sandbox.set_knobs(timeoutRate=1, timeoutSeconds=None, operations=["list-companies"])
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/companies")
        assert client.post("/companies", json={"name": "Dave"}).status_code == 200


async def statuses(make_sandbox_app, seed: int) -> list[int]:
    app = make_sandbox_app(SandboxConfig(seed=seed))
    app.state.sandbox.set_knobs(errorRate=0.3, rateLimitRate=0.2)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://s", headers=AUTH
    ) as c:
        return [(await c.get("/companies")).status_code for _ in range(30)]


async def test_a_seed_makes_faults_reproducible(make_sandbox_app) -> None:
    first = await statuses(make_sandbox_app, seed=3)
    assert first == await statuses(make_sandbox_app, seed=3)
    assert {200, 429, 500} <= set(first)
    assert first != await statuses(make_sandbox_app, seed=4)


async def test_a_seed_makes_ids_and_otps_reproducible(make_sandbox_app) -> None:
    async def first_connection() -> dict:
        app = make_sandbox_app(SandboxConfig(seed=5))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://s", headers=AUTH
        ) as c:
            company = (await c.post("/companies", json={"name": "Dave"})).json()
            return (
                await c.post(f"/companies/{company['id']}/connections", json={"platformKey": "hcws"})
            ).json()

    first, second = await first_connection(), await first_connection()
    assert (first["id"], first["linkUrl"]) == (second["id"], second["linkUrl"])


async def test_the_daily_quota_refuses_until_midnight_utc(sandbox) -> None:
    sandbox.state.set_knobs(dailyQuota=2)
    await sandbox.company("A")
    await sandbox.company("B")
    refused = await sandbox.client.post("/companies", json={"name": "C"})
    assert_codat_error(refused, 429)
    now = sandbox.state.clock.now()
    seconds_left = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    assert abs(int(refused.headers["Retry-After"]) - seconds_left) <= 2
    assert await company_count(sandbox) == 2
    sandbox.state.clock.advance(seconds_left + 1)
    assert (await sandbox.client.post("/companies", json={"name": "C"})).status_code == 200


async def test_counters_count_every_call_per_operation(sandbox) -> None:
    await sandbox.connection()
    await sandbox.client.get("/companies")
    await sandbox.client.get("/companies")
    counters = (await sandbox.client.get("/_sandbox/counters")).json()
    assert counters == {"create-company": 1, "create-connection": 1, "list-companies": 2}
