"""The /_sandbox admin API: Portal switches, knobs, clock, reset, and status changes."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.sandbox.support import assert_codat_error


async def test_portal_settings_change_partially(sandbox) -> None:
    response = await sandbox.client.put("/_sandbox/portal", json={"callout": {"fr": {"title": "Bonjour"}}})
    assert response.status_code == 200
    callout = (await sandbox.client.get("/_sandbox/portal")).json()["callout"]
    assert callout["fr"]["title"] == "Bonjour"
    assert callout["fr"]["body"].startswith("Obtenez")
    assert callout["en"]["title"] == "Connecting to QuickBooks"


@pytest.mark.parametrize(
    ("changes", "item_id"),
    [
        ({"callout": {"en": {"title": "t" * 51}}}, "callout.en.title"),
        ({"callout": {"fr": {"body": "b" * 151}}}, "callout.fr.body"),
        ({"callout": {"en": {"body": "Click <a href=x>here</a>"}}}, "callout.en.body"),
        ({"callout": {"fr": {"title": "a > b"}}}, "callout.fr.title"),
        ({"webhook": {"secret": "not-a-secret"}}, "webhook.secret"),
        ({"webhook": {"url": "ftp://x"}}, "webhook.url"),
        ({"redirectUrl": "javascript:alert(1)"}, "redirectUrl"),
        ({"integrationEnabled": "maybe"}, "integrationEnabled"),
        ({"surprise": True}, "surprise"),
    ],
)
async def test_invalid_portal_settings_are_422_naming_the_field(sandbox, changes, item_id) -> None:
    before = (await sandbox.client.get("/_sandbox/portal")).json()
    assert_codat_error(await sandbox.client.put("/_sandbox/portal", json=changes), 422, item_id)
    assert (await sandbox.client.get("/_sandbox/portal")).json() == before


async def test_callouts_at_their_limits_are_kept(sandbox) -> None:
    callout = {"en": {"title": "t" * 50, "body": "b" * 150}, "fr": {"title": "é" * 50, "body": "è" * 150}}
    response = await sandbox.client.put("/_sandbox/portal", json={"callout": callout})
    assert response.json()["callout"] == callout


@pytest.mark.parametrize(
    ("changes", "item_id"),
    [
        ({"errorRate": 2}, "errorRate"),
        ({"latencyMs": -1}, "latencyMs"),
        ({"operations": ["create-everything"]}, "operations"),
        ({"errorRate": 0.6, "rateLimitRate": 0.6}, ""),
    ],
)
async def test_invalid_knobs_are_422(sandbox, changes, item_id) -> None:
    before = (await sandbox.client.get("/_sandbox/knobs")).json()
    assert_codat_error(await sandbox.client.put("/_sandbox/knobs", json=changes), 422, item_id)
    assert (await sandbox.client.get("/_sandbox/knobs")).json() == before


async def test_knobs_change_partially(sandbox) -> None:
    knobs = (
        await sandbox.client.put("/_sandbox/knobs", json={"latencyMs": 5, "operations": ["get-company"]})
    ).json()
    assert (knobs["latencyMs"], knobs["operations"], knobs["otpLifetimeSeconds"]) == (
        5,
        ["get-company"],
        3600,
    )


async def test_the_clock_moves_forward_only(sandbox) -> None:
    expected = sandbox.state.clock.now() + timedelta(hours=2)
    moved = (await sandbox.client.post("/_sandbox/clock/advance", json={"seconds": 7200})).json()["now"]
    assert abs((datetime.fromisoformat(moved) - expected).total_seconds()) < 5
    assert_codat_error(
        await sandbox.client.post("/_sandbox/clock/advance", json={"seconds": -1}), 422, "seconds"
    )


async def test_reset_forgets_everything(sandbox) -> None:
    await sandbox.connection()
    sandbox.state.set_knobs(latencyMs=5)
    sandbox.state.set_settings(integrationEnabled=False)
    sandbox.state.clock.advance(3600)
    assert (await sandbox.client.post("/_sandbox/reset")).status_code == 204
    assert sandbox.state.companies == {}
    assert (await sandbox.client.get("/_sandbox/counters")).json() == {}
    assert (await sandbox.client.get("/_sandbox/knobs")).json()["latencyMs"] == 0
    assert (await sandbox.client.get("/_sandbox/portal")).json()["integrationEnabled"] is True
    assert abs((sandbox.state.clock.now() - datetime.now(UTC)).total_seconds()) < 5


@pytest.mark.parametrize("status", ["Linked", "Deauthorized", "Unlinked", "PendingAuth"])
async def test_a_connection_status_can_be_set(sandbox, status) -> None:
    connection = await sandbox.connection()
    response = await sandbox.client.post(
        f"/_sandbox/connections/{connection['id']}/status", json={"status": status}
    )
    assert response.json()["status"] == status
    path = f"/companies/{connection['companyId']}/connections/{connection['id']}"
    assert (await sandbox.client.get(path)).json()["status"] == status


async def test_status_changes_need_a_known_connection_and_status(sandbox) -> None:
    connection = await sandbox.connection()
    assert_codat_error(
        await sandbox.client.post("/_sandbox/connections/nope/status", json={"status": "Linked"}), 404
    )
    response = await sandbox.client.post(
        f"/_sandbox/connections/{connection['id']}/status", json={"status": "Gone"}
    )
    assert_codat_error(response, 422, "status")


async def test_an_account_can_be_disconnected(sandbox) -> None:
    connection = await sandbox.connection()
    await sandbox.account(connection, "ac-001")
    response = await sandbox.client.post(
        f"/_sandbox/connections/{connection['id']}/accounts/ac-001/disconnect"
    )
    assert response.json()["status"] == "disconnected"
    assert (await sandbox.accounts(connection))[0]["status"] == "disconnected"
    missing = await sandbox.client.post(f"/_sandbox/connections/{connection['id']}/accounts/nope/disconnect")
    assert_codat_error(missing, 404)


async def test_the_admin_page_shows_the_switches_escaped(sandbox) -> None:
    sandbox.state.set_settings(appName="Dave & Sons")
    page = await sandbox.client.get("/_sandbox/")
    assert page.status_code == 200
    assert "Dave &amp; Sons" in page.text
    assert "Save Portal settings" in page.text


@pytest.mark.parametrize("literal", [b"Infinity", b"NaN"])
async def test_knobs_that_are_not_json_are_422_and_change_nothing(sandbox, literal) -> None:
    before = (await sandbox.client.get("/_sandbox/knobs")).json()
    response = await sandbox.client.put(
        "/_sandbox/knobs",
        content=b'{"timeoutSeconds": ' + literal + b"}",
        headers={"content-type": "application/json"},
    )
    assert_codat_error(response, 422)
    assert (await sandbox.client.get("/_sandbox/knobs")).json() == before
