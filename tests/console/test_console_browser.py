"""Support staff in headless Chromium: the console finds a broken business, opens its timeline, re-applies the
dead webhook that would have mended it, the feed recovers, and the timeline names the operator and the action.

The BFF runs as `dev` runs it (uvicorn, the sandbox as Codat, the events loop in-process); each step saves a
screenshot under tests/artifacts/console/.
"""

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect

from app.auth.tokens import mint_end_user_token, mint_service_token
from app.config import Settings
from app.main import create_app
from app.sandbox.lifecycle import Lifecycle
from app.webhooks import service as webhooks_service
from tests.browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.browser import chromium
from tests.conftest import _empty_tables
from tests.factories import ACCOUNTS, connect_in_quickbooks, disconnect_in_quickbooks, register
from tests.web.conftest import run_async
from tests.web.support import Steps

pytestmark = pytest.mark.browser
ARTIFACTS = BROWSER_ARTIFACTS / "console"
BROKEN = "biz-broken"


@pytest.fixture
def console(database_url: str) -> Iterator[tuple[str, Settings, Any]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        environment="dev",
        database={"url": database_url},
        sandbox={"enabled": True, "public_url": f"{base}/sandbox", "webhook_url": f"{base}/webhooks/codat"},
        webhooks={"apply_attempts": 1},  # an event that fails to apply is dead at once
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the BFF did not start under uvicorn"
            time.sleep(0.01)
        sandbox = next(r.app for r in app.routes if getattr(r, "path", None) == "/sandbox").state.sandbox
        yield base, settings, (sandbox, server.servers[0].get_loop())
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        run_async(_empty_tables(database_url))


def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def break_a_feed_whose_repair_dies(
    base: str, settings: Settings, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """biz-broken: acc-1 connected, then disconnected in QuickBooks; the SMB reconnects it there, but the
    webhook saying so hits a bug here and dies. Two unfinished businesses stand around it."""
    service = {"Authorization": f"Bearer {mint_service_token(settings.auth, 'crm', ['businesses:write'])}"}
    user = {"Authorization": f"Bearer {mint_end_user_token(settings.auth, BROKEN)}"}

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            for other in ("biz-a", "biz-z"):
                await register(http, service, other)
            await register(http, service, BROKEN, accounts={"acc-1": ACCOUNTS["acc-1"]})
            link = (await http.post("/v1/bank-feed/connect", headers=user)).json()["linkUrl"]
            credentials = await connect_in_quickbooks(http, link, ["acc-1"])
            await disconnect_in_quickbooks(http, credentials, "acc-1")
            await wait_for_status(http, user, "disconnected")
            real_apply = webhooks_service.apply

            async def buggy(repo, body, at):  # type: ignore[no-untyped-def]
                if body["eventType"] == "bankFeeds.sourceAccount.connected":
                    raise RuntimeError("a bug in applying sourceAccount.connected")
                return await real_apply(repo, body, at)

            monkeypatch.setattr(webhooks_service, "apply", buggy)
            connection_id = (await http.get("/v1/bank-feed", headers=user)).json()["connection"][
                "connectionId"
            ]
            await reconnect_in_quickbooks(sandbox, f"{base}/sandbox", connection_id, "acc-1")
            admin = {
                "Authorization": f"Bearer {mint_service_token(settings.auth, 'ops', ['webhooks:admin'])}"
            }
            for _ in range(150):
                if (await http.get("/internal/v1/webhooks/events", headers=admin)).json():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the webhook did not die")
            monkeypatch.setattr(webhooks_service, "apply", real_apply)  # the bug is fixed and deployed

    run_async(scenario())


async def reconnect_in_quickbooks(sandbox: Any, root: str, connection_id: str, account_id: str) -> None:
    """The SMB reconnects the account in QuickBooks itself: Codat sends connection.reconnected and
    bankFeeds.sourceAccount.connected (run on the server's event loop, where the sandbox sends webhooks)."""
    state, loop = sandbox

    async def in_server_loop() -> None:
        connection = state.connections[connection_id]
        credentials = state.issue_credentials(connection)  # the SMB signs in to QuickBooks again
        Lifecycle(state, root).connect_accounts(
            connection, [connection.accounts[account_id]], date.today(), credentials
        )

    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(in_server_loop(), loop))


async def wait_for_status(http: httpx.AsyncClient, user: dict[str, str], status: str) -> None:
    for _ in range(150):
        view = (await http.get("/v1/bank-feed", headers=user)).json()
        if view["accounts"][0]["status"] == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"acc-1 never became {status}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        # A shared, busy machine: wait longer for the page to reach a state (no time limit is asserted).
        expect.set_options(timeout=15_000)
        yield launched
        expect.set_options(timeout=5_000)


def test_support_finds_a_broken_feed_reapplies_its_dead_webhook_and_it_recovers(
    browser: Browser, console: tuple[str, Settings, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, settings, sandbox = console
    break_a_feed_whose_repair_dies(base, settings, sandbox, monkeypatch)
    token = mint_service_token(settings.auth, "alice", ["console:read", "console:write"])
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(
        15_000
    )  # a shared, busy machine: waits for state, never a time limit asserted
    page: Page = context.new_page()
    step = Steps(page, ARTIFACTS)

    with step("sign-in"):
        page.goto(f"{base}/console")
        page.get_by_label("Console token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#operator")).to_have_text("alice")

    with step("broken-list"):
        until(lambda: _listed_as_broken(page, base), "the projection to list the broken feed")
        expect(page.locator("tr[id^=feed-]")).to_have_count(1)

    with step("timeline"):
        page.get_by_role("link", name=BROKEN).click()
        expect(page.locator("#timeline")).to_contain_text("account acc-1 disconnected")
        expect(page.locator("#account-acc-1 .status")).to_have_text("disconnected")
        expect(page.locator("#dead-webhooks")).to_contain_text("a bug in applying sourceAccount.connected")

    with step("reapply"):
        reapply = page.locator("#dead-webhooks").get_by_role("button", name="Re-apply")
        # The sandbox may report the reconnection more than once, as Codat may: each copy died; re-apply each.
        copies = reapply.count()
        for _ in range(copies):
            reapply.first.click()
            expect(page.locator("#said")).to_contain_text("re-applied: applied")
        expect(page.locator("#account-acc-1 .status")).to_have_text("connected")
        expect(page.locator("#action")).to_have_text("none")
        expect(page.locator("#dead-webhooks")).to_contain_text("None.")
        entry = page.locator("#timeline tr.entry").filter(has_text="webhook.reapplied")
        expect(entry.locator(".actor")).to_have_text(["operator:alice"] * copies)  # one line a copy

    with step("recovered"):
        until(lambda: not _listed_as_broken(page, base), "the feed to leave the broken list")
        until(lambda: _timeline_has(page, base, "account acc-1 connected"), "the recovery in the timeline")
    context.close()


def _listed_as_broken(page: Page, base: str) -> bool:
    page.goto(f"{base}/console?health=broken")
    return page.locator(f"#feed-{BROKEN}").count() == 1


def _timeline_has(page: Page, base: str, text: str) -> bool:
    page.goto(f"{base}/console/businesses/{BROKEN}")
    return text in page.locator("#timeline").inner_text()
