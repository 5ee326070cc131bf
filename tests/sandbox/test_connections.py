"""Connections: hcws only, the Portal switch, link OTPs, unlink, delete, and browser-facing links."""

import re

import httpx
import pytest
from fastapi import FastAPI

from app.sandbox import SandboxConfig
from tests.sandbox.support import AUTH, assert_codat_error

HOUR = 3600


def otp_of(connection: dict) -> str:
    return connection["linkUrl"].rsplit("otp=", 1)[1]


async def connection_count(sandbox, company_id: str) -> int:
    return (await sandbox.client.get(f"/companies/{company_id}/connections")).json()["totalResults"]


async def test_an_hcws_connection_is_a_pending_bank_feed_with_a_link(sandbox) -> None:
    connection = await sandbox.connection()
    assert {k: connection[k] for k in ("sourceType", "platformName", "integrationKey", "status")} == {
        "sourceType": "BankFeed",
        "platformName": "QuickBooks Online Bank Feeds",
        "integrationKey": "hcws",
        "status": "PendingAuth",
    }
    expected = (
        rf"http://sandbox\.test/link/companies/{connection['companyId']}/connections/{connection['id']}"
    )
    assert re.fullmatch(expected + r"/start\?otp=\d{6}", connection["linkUrl"])


@pytest.mark.parametrize(
    ("body", "status", "item_id"),
    [
        ({"platformKey": "zzzz"}, 400, "platformKey"),
        ({"platformKey": "HCWS"}, 400, "platformKey"),
        ({"platformKey": "hcw"}, 400, "platformKey"),
        ({}, 400, "platformKey"),
        (None, 400, None),
    ],
)
async def test_unknown_platform_keys_are_refused(sandbox, body, status, item_id) -> None:
    company = await sandbox.company()
    response = await sandbox.client.post(f"/companies/{company['id']}/connections", json=body)
    assert_codat_error(response, status, item_id)
    assert await connection_count(sandbox, company["id"]) == 0


async def test_hcws_is_refused_while_the_integration_is_disabled(sandbox) -> None:
    company = await sandbox.company()
    sandbox.state.set_settings(integrationEnabled=False)
    path = f"/companies/{company['id']}/connections"
    assert_codat_error(await sandbox.client.post(path, json={"platformKey": "hcws"}), 403)
    assert await connection_count(sandbox, company["id"]) == 0
    sandbox.state.set_settings(integrationEnabled=True)
    assert (await sandbox.client.post(path, json={"platformKey": "hcws"})).status_code == 200


async def test_a_connection_needs_an_existing_company(sandbox) -> None:
    response = await sandbox.client.post(
        "/companies/9f1c1b43-60f1-4c56-a3f2-7e8f0d5a2b11/connections", json={"platformKey": "hcws"}
    )
    assert_codat_error(response, 404)


async def test_get_connection_hands_out_a_new_otp_and_earlier_ones_live_out_their_hour(sandbox) -> None:
    connection = await sandbox.connection()
    path = f"/companies/{connection['companyId']}/connections/{connection['id']}"
    sandbox.state.clock.advance(HOUR - 60)

    renewed = (await sandbox.client.get(path)).json()
    listed = (await sandbox.client.get(f"/companies/{connection['companyId']}/connections")).json()
    first_page_still_open = await sandbox.client.get(connection["linkUrl"])
    sandbox.state.clock.advance(60)
    first_page_lapsed = await sandbox.client.get(connection["linkUrl"])
    renewed_page = await sandbox.client.get(renewed["linkUrl"])

    assert otp_of(renewed) != otp_of(connection)
    assert listed["results"][0]["linkUrl"] == renewed["linkUrl"]  # List shows the current OTP, minting none
    assert first_page_still_open.status_code == 200
    assert first_page_lapsed.status_code == 401
    assert renewed_page.status_code == 200


async def test_list_renews_an_otp_only_once_it_has_lapsed(sandbox) -> None:
    connection = await sandbox.connection()
    list_path = f"/companies/{connection['companyId']}/connections"
    sandbox.state.clock.advance(HOUR - 1)
    assert (await sandbox.client.get(list_path)).json()["results"][0]["linkUrl"] == connection["linkUrl"]
    sandbox.state.clock.advance(1)
    assert otp_of((await sandbox.client.get(list_path)).json()["results"][0]) != otp_of(connection)


async def test_the_otp_lifetime_knob_applies_to_new_otps(sandbox) -> None:
    sandbox.state.set_knobs(otpLifetimeSeconds=60)
    connection = await sandbox.connection()
    sandbox.state.clock.advance(60)
    path = f"/companies/{connection['companyId']}/connections/{connection['id']}"
    assert otp_of((await sandbox.client.get(path)).json()) != otp_of(connection)


async def test_only_linked_connections_can_be_unlinked(sandbox) -> None:
    connection = await sandbox.connection()
    path = f"/companies/{connection['companyId']}/connections/{connection['id']}"
    assert_codat_error(await sandbox.client.patch(path, json={"status": "Unlinked"}), 400, "status")
    assert (await sandbox.client.get(path)).json()["status"] == "PendingAuth"

    await sandbox.client.post(f"/_sandbox/connections/{connection['id']}/status", json={"status": "Linked"})
    assert_codat_error(await sandbox.client.patch(path, json={"status": "Deauthorized"}), 400, "status")
    unlinked = await sandbox.client.patch(path, json={"status": "Unlinked"})
    assert unlinked.status_code == 200
    assert unlinked.json()["status"] == "Unlinked"
    assert (await sandbox.client.get(path)).json()["status"] == "Unlinked"


async def test_deleting_a_connection(sandbox) -> None:
    connection = await sandbox.connection()
    path = f"/companies/{connection['companyId']}/connections/{connection['id']}"
    deleted = await sandbox.client.delete(path)
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert_codat_error(await sandbox.client.get(path), 404)
    assert await connection_count(sandbox, connection["companyId"]) == 0


async def test_links_use_the_configured_public_url(make_sandbox_app) -> None:
    app = make_sandbox_app(SandboxConfig(public_url="https://sandbox.example/codat/"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://internal", headers=AUTH
    ) as c:
        company = (await c.post("/companies", json={"name": "Dave"})).json()
        connection = (
            await c.post(f"/companies/{company['id']}/connections", json={"platformKey": "hcws"})
        ).json()
    assert connection["linkUrl"].startswith(f"https://sandbox.example/codat/link/companies/{company['id']}/")


async def test_links_respect_the_mount_point(make_sandbox_app) -> None:
    parent = FastAPI()
    parent.mount("/sandbox", make_sandbox_app())
    transport = httpx.ASGITransport(app=parent)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000", headers=AUTH) as c:
        company = (await c.post("/sandbox/companies", json={"name": "Dave"})).json()
        connection = (
            await c.post(f"/sandbox/companies/{company['id']}/connections", json={"platformKey": "hcws"})
        ).json()
        assert connection["linkUrl"].startswith("http://localhost:8000/sandbox/link/companies/")
        assert (await c.get(connection["linkUrl"])).status_code == 200


async def test_links_follow_the_host_each_request_came_to(sandbox) -> None:
    connection = await sandbox.connection()
    path = f"/companies/{connection['companyId']}/connections/{connection['id']}"
    for host in ("sandbox.test", "127.0.0.1:8001", "sandbox.test"):
        read = (await sandbox.client.get(path, headers={"Host": host})).json()
        assert read["linkUrl"].startswith(f"http://{host}/link/companies/{connection['companyId']}/")
