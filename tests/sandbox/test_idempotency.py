"""Idempotency-Key on POST and PATCH, as Codat documents it."""

import asyncio

import httpx

from app.sandbox import SandboxConfig
from tests.sandbox.support import assert_codat_error, basic_auth


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def company_names(sandbox) -> list[str]:
    return [c["name"] for c in (await sandbox.client.get("/companies")).json()["results"]]


async def test_the_first_response_is_replayed(sandbox) -> None:
    first = await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1"))
    again = await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1"))
    assert (again.status_code, again.json()) == (200, first.json())
    assert await company_names(sandbox) == ["Dave"]
    assert sandbox.state.counters["create-company"] == 2


async def test_errors_are_replayed_too(sandbox) -> None:
    first = await sandbox.client.post("/companies", json={"name": ""}, headers=key("k1"))
    again = await sandbox.client.post("/companies", json={"name": ""}, headers=key("k1"))
    assert_codat_error(again, 400)
    assert again.json()["correlationId"] == first.json()["correlationId"]


async def test_the_same_key_with_another_body_is_422(sandbox) -> None:
    await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1"))
    assert_codat_error(await sandbox.client.post("/companies", json={"name": "Eve"}, headers=key("k1")), 422)
    assert await company_names(sandbox) == ["Dave"]


async def test_the_same_key_and_body_on_another_path_is_422(sandbox) -> None:
    dave, eve = await sandbox.company("Dave"), await sandbox.company("Eve")
    body = {"platformKey": "hcws"}
    made = await sandbox.client.post(f"/companies/{dave['id']}/connections", json=body, headers=key("k1"))
    assert made.status_code == 200
    refused = await sandbox.client.post(f"/companies/{eve['id']}/connections", json=body, headers=key("k1"))
    assert_codat_error(refused, 422)
    assert sandbox.state.companies[eve["id"]].connections == {}


async def test_the_same_key_while_the_first_is_running_is_409(sandbox) -> None:
    sandbox.state.set_knobs(latencyMs=200)
    first, second = await asyncio.gather(
        sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1")),
        sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1")),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    assert_codat_error(first if first.status_code == 409 else second, 409)
    assert await company_names(sandbox) == ["Dave"]


async def test_a_429_is_not_kept(sandbox) -> None:
    sandbox.state.set_knobs(rateLimitRate=1)
    assert_codat_error(await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1")), 429)
    sandbox.state.set_knobs(rateLimitRate=0)
    assert (
        await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1"))
    ).status_code == 200
    assert await company_names(sandbox) == ["Dave"]


async def test_a_response_lost_to_a_timeout_is_replayed_on_retry(sandbox) -> None:
    sandbox.state.set_knobs(timeoutRate=1, timeoutSeconds=0)
    assert_codat_error(await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1")), 504)
    sandbox.state.set_knobs(timeoutRate=0)
    retried = await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1"))
    assert retried.status_code == 200
    assert await company_names(sandbox) == ["Dave"]


async def test_keys_expire_after_90_minutes_of_sandbox_time(sandbox) -> None:
    first = await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1"))
    sandbox.state.clock.advance(89 * 60)
    assert (
        await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1"))
    ).json() == first.json()
    sandbox.state.clock.advance(60)
    later = await sandbox.client.post("/companies", json={"name": "Dave"}, headers=key("k1"))
    assert later.json()["id"] != first.json()["id"]
    assert await company_names(sandbox) == ["Dave", "Dave"]


async def test_keys_are_scoped_per_api_key(make_sandbox_app) -> None:
    app = make_sandbox_app(SandboxConfig(api_keys=["key-one", "key-two"]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test"
    ) as client:
        for api_key, name in (("key-one", "Dave"), ("key-two", "Eve")):
            headers = {"Authorization": basic_auth(api_key), **key("shared")}
            assert (await client.post("/companies", json={"name": name}, headers=headers)).status_code == 200
    assert sorted(c.name for c in app.state.sandbox.companies.values()) == ["Dave", "Eve"]


async def test_patch_is_idempotent_and_get_ignores_the_key(sandbox) -> None:
    connection = await sandbox.connection()
    await sandbox.account(connection, "ac-001")
    path = sandbox.accounts_path(connection) + "/ac-001"
    rename = {"id": "ac-001", "accountName": "Operating"}
    first = await sandbox.client.patch(path, json=rename, headers=key("p1"))
    assert (await sandbox.client.patch(path, json=rename, headers=key("p1"))).json() == first.json()
    assert sandbox.state.counters["update-source-account"] == 2
    listed = await sandbox.client.get(sandbox.accounts_path(connection), headers=key("p1"))
    assert listed.status_code == 200
