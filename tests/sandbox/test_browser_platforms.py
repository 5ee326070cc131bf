"""An SMB in headless Chromium, on a phone-sized screen (390 px), for the targets beyond QuickBooks Online:
Xero's consent and Codat's hosted mapping page; Sage's Connect Bank with the connection id, OTP and Confirm.
Each ends with a transaction delivered to the account it mapped. Screenshots go to tests/artifacts/."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app.sandbox import SandboxConfig
from tests.browser import ARTIFACTS, chromium
from tests.sandbox.support import AUTH, account_body, serve_in_thread

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        ARTIFACTS.mkdir(exist_ok=True)
        yield launched


@pytest.fixture
def codat(make_sandbox_app) -> Iterator[tuple[httpx.Client, str]]:
    app = make_sandbox_app(SandboxConfig(seed=16))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        yield client, url


def onboard(client: httpx.Client, platform_key: str) -> dict:
    company = client.post("/companies", json={"name": "Dave's Bakery"}).json()
    connection = client.post(
        f"/companies/{company['id']}/connections", json={"platformKey": platform_key}
    ).json()
    path = f"/companies/{company['id']}/connections/{connection['id']}"
    batch = [
        account_body("gbp-1", accountName="Current", currency="GBP"),
        account_body("card-1", accountName="Card", accountType="creditCard", currency="GBP"),
    ]
    assert client.post(path + "/connectionInfo/bankFeedAccounts/batch", json=batch).status_code == 201
    return {**connection, "path": path}


def fits_the_screen(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def push_one(client: httpx.Client, connection: dict, account_id: str) -> None:
    """A transaction for today, pushed and delivered (the push operation ends Success)."""
    body = {
        "accountId": account_id,
        "transactions": [
            {
                "id": f"{account_id}-t1",
                "date": datetime.now(UTC).date().isoformat() + "T09:00:00",
                "description": "Flour",
                "amount": -12.5,
                "balance": 87.5,
                "transactionType": "Debit",
            }
        ],
    }
    pushed = client.post(f"{connection['path']}/push/bankAccounts/{account_id}/bankTransactions", json=body)
    assert pushed.status_code == 200, pushed.text
    key = pushed.json()["pushOperationKey"]
    company_id = connection["path"].split("/")[2]
    for _ in range(100):
        operation = client.get(f"/companies/{company_id}/push/{key}").json()
        if operation["status"] != "Pending":
            break
        time.sleep(0.01)
    assert operation["status"] == "Success", operation
    delivered = client.get(f"/_sandbox/connections/{connection['id']}/accounts/{account_id}/bankTransactions")
    assert [t["id"] for t in delivered.json()] == [f"{account_id}-t1"]


def statuses(client: httpx.Client, connection: dict) -> list[tuple[str, str]]:
    accounts = client.get(connection["path"] + "/connectionInfo/bankFeedAccounts").json()
    return [(a["id"], a["status"]) for a in accounts]


def test_an_smb_allows_xero_and_maps_two_accounts_on_codats_page(browser: Browser, codat) -> None:
    client, _ = codat
    client.put(
        "/_sandbox/portal", json={"appName": "Bank of Dave", "redirectUrl": "https://app.example/done"}
    )
    connection = onboard(client, "gbol")
    page = browser.new_page(viewport=PHONE)

    page.goto(connection["linkUrl"])
    expect(page.locator("#heading")).to_have_text("Allow Bank of Dave to access Xero?")
    expect(page.locator("#organisation")).to_have_text("Dave's Bakery")
    fits_the_screen(page)
    page.screenshot(path=ARTIFACTS / "xero-consent.png", full_page=True)
    page.click("#allow")

    expect(page.locator("#heading")).to_have_text("Choose where each account feeds")
    options = page.locator("#target-gbp-1 option").all_inner_texts()
    assert options == ["Business Current Account", "Business Savings", "Create a new account"]
    assert page.locator("#target-card-1 option").all_inner_texts() == [
        "Business Credit Card",
        "Create a new account",
    ]
    fits_the_screen(page)
    page.screenshot(path=ARTIFACTS / "codat-mapping-page.png", full_page=True)
    page.select_option("#target-gbp-1", label="Business Savings")
    page.click("#map-button-gbp-1")
    expect(page.locator("#target-name-gbp-1")).to_have_text("Business Savings")
    page.click("#map-button-card-1")
    expect(page.locator("#target-name-card-1")).to_have_text("Business Credit Card")
    expect(page.locator("#status-card-1")).to_have_text("connected")
    expect(page.locator("#return-to-app")).to_have_attribute("href", "https://app.example/done")
    fits_the_screen(page)
    page.screenshot(path=ARTIFACTS / "codat-mapping-done.png", full_page=True)

    assert client.get(connection["path"]).json()["status"] == "Linked"
    assert statuses(client, connection) == [("gbp-1", "connected"), ("card-1", "connected")]
    push_one(client, connection, "gbp-1")


def test_an_smb_connects_in_sage_with_the_connection_id_and_otp_then_confirms(
    browser: Browser, codat
) -> None:
    client, url = codat
    connection = onboard(client, "olpr")
    otp = client.post(connection["path"] + "/bankFeeds/otp").json()["otp"]
    page = browser.new_page(viewport=PHONE)

    page.goto(url + "/sage/")
    expect(page.locator("#heading")).to_have_text("Connect Bank")
    page.fill("#connectionId", connection["id"])
    page.fill("#otp", otp)
    fits_the_screen(page)
    page.screenshot(path=ARTIFACTS / "sage-connect-bank.png", full_page=True)
    page.click("#submit")

    expect(page.locator("#heading")).to_have_text("Select the bank account to connect")
    page.check("#account-gbp-1")
    page.select_option("#product", "Sage 50")
    page.click("#ok")
    expect(page.locator("#feed-status-gbp-1")).to_have_text("Pending Confirmation")
    assert statuses(client, connection) == [("gbp-1", "pending"), ("card-1", "pending")]
    fits_the_screen(page)
    page.screenshot(path=ARTIFACTS / "sage-pending-confirmation.png", full_page=True)
    page.click("#confirm-gbp-1")
    expect(page.locator("#feed-status-gbp-1")).to_have_text("Connected")

    assert client.get(connection["path"]).json()["status"] == "Linked"
    assert statuses(client, connection) == [("gbp-1", "connected"), ("card-1", "pending")]
    push_one(client, connection, "gbp-1")


def test_a_sage_link_url_opens_no_link_page(browser: Browser, codat) -> None:
    client, _ = codat
    connection = onboard(client, "olpr")
    page = browser.new_page(viewport=PHONE)
    response = page.goto(connection["linkUrl"])
    assert response is not None
    assert response.status == 404
    expect(page.locator("#heading")).to_have_text("This link is not used for Sage")
