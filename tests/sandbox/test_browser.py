"""An SMB in headless Chromium: the French Link page, credentials, the QuickBooks step; an expired link.

Screenshots go to tests/artifacts/ (gitignored).
"""

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Browser, expect

from app.sandbox import SandboxConfig
from tests.browser import ARTIFACTS, chromium
from tests.sandbox.support import AUTH, account_body, serve_in_thread

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        ARTIFACTS.mkdir(exist_ok=True)
        yield launched


@pytest.fixture
def codat(make_sandbox_app) -> Iterator[tuple[httpx.Client, object]]:
    app = make_sandbox_app(SandboxConfig(seed=21))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        yield client, app.state.sandbox


def onboard(client: httpx.Client) -> dict:
    """What the BFF does before sending the SMB to the linkUrl: company, hcws connection, source accounts."""
    company = client.post("/companies", json={"name": "Dave's Bakery"}).json()
    connection = client.post(f"/companies/{company['id']}/connections", json={"platformKey": "hcws"}).json()
    accounts = f"/companies/{company['id']}/connections/{connection['id']}/connectionInfo/bankFeedAccounts"
    batch = [account_body("ac-001", accountName="Checking"), account_body("ac-002", accountName="Savings"),
             account_body("ac-003", accountName="Card", accountType="creditCard")]  # fmt: skip
    assert client.post(accounts + "/batch", json=batch).status_code == 201
    return {**connection, "accountsPath": accounts}


def test_an_smb_connects_chosen_accounts_from_the_french_link_page(browser: Browser, codat) -> None:
    client, state = codat
    client.put(
        "/_sandbox/portal", json={"callout": {"fr": {"title": "Besoin d'aide ?", "body": "Appelez le 555."}}}
    )
    connection = onboard(client)
    page = browser.new_page()

    page.goto(connection["linkUrl"])
    expect(page.locator("#heading")).to_have_text("Connect to QuickBooks Online Bank Feeds")
    page.click("#lang-toggle")
    expect(page.locator("#heading")).to_have_text("Connexion aux flux bancaires QuickBooks Online")
    expect(page.locator("#callout-title")).to_have_text("Besoin d'aide ?")
    expect(page.locator("#callout-body")).to_have_text("Appelez le 555.")
    page.screenshot(path=ARTIFACTS / "link-page-fr.png", full_page=True)

    page.click("#get-credentials")
    username = page.locator("#credential-username").inner_text()
    password = page.locator("#credential-password").inner_text()
    expect(page.locator("#revoke-credentials")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "link-page-credentials.png", full_page=True)

    page.click("#open-quickbooks")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("#sign-in")
    page.check("input[name=account][value=ac-001]")
    page.check("input[name=account][value=ac-003]")
    start = (state.clock.now() - timedelta(days=5)).date().isoformat()
    page.fill("input[name=feedStartDate]", start)
    page.screenshot(path=ARTIFACTS / "quickbooks-choose-accounts.png", full_page=True)
    page.click("#connect")
    expect(page.locator("#heading")).to_have_text("Bank feed connected")
    page.screenshot(path=ARTIFACTS / "quickbooks-connected.png", full_page=True)

    accounts = client.get(connection["accountsPath"]).json()
    assert [(a["id"], a["status"], a["feedStartDate"]) for a in accounts] == [
        ("ac-001", "connected", start),
        ("ac-002", "pending", None),
        ("ac-003", "connected", start),
    ]
    company_id = connection["linkUrl"].split("/companies/")[1].split("/")[0]
    assert client.get(f"/companies/{company_id}/connections/{connection['id']}").json()["status"] == "Linked"


def test_an_expired_link_shows_the_401_page(browser: Browser, codat) -> None:
    client, _ = codat
    connection = onboard(client)
    client.post("/_sandbox/clock/advance", json={"seconds": 3600})
    page = browser.new_page()
    response = page.goto(connection["linkUrl"])
    assert response is not None
    assert response.status == 401
    expect(page.locator("#heading")).to_have_text("This link has expired")
    expect(page.locator("#expired-next-step")).to_contain_text("click Connect again to get a new link")
    page.screenshot(path=ARTIFACTS / "link-page-expired.png", full_page=True)
