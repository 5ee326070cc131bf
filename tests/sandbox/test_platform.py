"""Platform API reads: the hcws integration (enabled follows the Portal) and the sync settings."""

from tests.sandbox.support import assert_codat_error


async def test_the_integration_follows_the_portal_switch(sandbox) -> None:
    integration = (await sandbox.client.get("/integrations/hcws")).json()
    assert (integration["key"], integration["name"], integration["enabled"]) == (
        "hcws",
        "QuickBooks Online Bank Feeds",
        True,
    )
    sandbox.state.set_settings(integrationEnabled=False)
    assert (await sandbox.client.get("/integrations/hcws")).json()["enabled"] is False


async def test_unknown_integrations_are_not_found(sandbox) -> None:
    assert_codat_error(await sandbox.client.get("/integrations/zzzz"), 404)


async def test_sync_settings_list_the_enabled_data_types(sandbox) -> None:
    settings = (await sandbox.client.get("/profile/syncSettings")).json()
    assert [s["dataType"] for s in settings["settings"]] == ["bankAccounts", "bankTransactions"]
    sandbox.state.set_settings(dataTypes={"bankAccounts": False})
    settings = (await sandbox.client.get("/profile/syncSettings")).json()
    assert [s["dataType"] for s in settings["settings"]] == ["bankTransactions"]


async def test_platform_reads_need_a_key(sandbox) -> None:
    request = sandbox.client.build_request("GET", "/integrations/hcws")
    del request.headers["Authorization"]
    assert_codat_error(await sandbox.client.send(request), 401)
