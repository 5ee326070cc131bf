"""A person in headless Chromium: the demo, QuickBooks Online picked, Connect, the Codat Link page, the
QuickBooks stand-in, and back.

Each step saves a screenshot under tests/artifacts/demo/ (gitignored); a failing step shows the page's text.
"""

import pytest
from playwright.sync_api import Page, expect

from tests.web.support import Steps, row

pytestmark = pytest.mark.browser


def test_a_person_connects_chosen_accounts_and_comes_back_to_see_them_connected(
    page: Page, demo_url: str
) -> None:
    step = Steps(page)

    with step("demo"):
        page.goto(demo_url)
        expect(page.locator("#connected-count")).to_have_text("0 of 3 accounts connected")
        for account_id in ("acc-checking", "acc-savings", "acc-card"):
            expect(row(page, account_id).locator(".status")).to_have_text("not added")
        page.get_by_label("Where do you keep your books?").select_option(label="QuickBooks Online")
        page.get_by_label("Include Business credit card").uncheck()

    with step("link-page"):
        page.get_by_role("button", name="Connect to QuickBooks Online").click()
        expect(page.locator("#heading")).to_have_text("Connect to QuickBooks Online Bank Feeds")

    with step("credentials"):
        page.get_by_role("button", name="Get credentials").click()
        username = page.locator("#credential-username").inner_text()
        password = page.locator("#credential-password").inner_text()

    with step("quickbooks-sign-in"):
        page.get_by_role("link", name="Open QuickBooks").click()
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)

    with step("quickbooks-accounts"):
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("input[name=account]")).to_have_count(2)
        page.get_by_label("Operating checking").check()
        page.get_by_label("Tax reserve savings").check()

    with step("quickbooks-connected"):
        page.get_by_role("button", name="Connect", exact=True).click()
        expect(page.locator("#heading")).to_have_text("Bank feed connected")

    with step("demo-connected"):
        page.get_by_role("link", name="Return to").click()
        expect(page.locator("#connected-count")).to_have_text(
            "2 of 3 accounts connected to QuickBooks Online"
        )
        expect(row(page, "acc-checking").locator(".status")).to_have_text("connected")
        expect(row(page, "acc-savings").locator(".status")).to_have_text("connected")
        expect(row(page, "acc-card").locator(".status")).to_have_text("not added")
        expect(page.get_by_role("button", name="Add accounts to QuickBooks")).to_be_visible()

    with step("rename"):
        row(page, "acc-checking").get_by_role("button", name="Rename Operating checking").click()
        page.get_by_label("Account name").fill("Main checking")

    with step("renamed"):
        page.get_by_role("button", name="Save").click()
        expect(row(page, "acc-checking").locator(".name")).to_have_text("Main checking")

    with step("disconnected-live"):
        # In another tab, QuickBooks drops an account: the BFF hears it by webhook, the demo without a reload.
        quickbooks = page.context.new_page()
        quickbooks.goto(f"{demo_url}/sandbox/qbo/")
        quickbooks.get_by_label("Username").fill(username)
        quickbooks.get_by_label("Password").fill(password)
        quickbooks.get_by_role("button", name="Sign in").click()
        quickbooks.locator("#disconnect-acc-savings").click()
        expect(quickbooks.locator("#notice")).to_contain_text("was disconnected")
        quickbooks.close()
        # QuickBooks tells Codat 10 days later: move the sandbox's clock rather than wait.
        page.request.post(f"{demo_url}/sandbox/_sandbox/clock/advance", data={"seconds": 10 * 86400})
        expect(row(page, "acc-savings").locator(".status")).to_have_text("disconnected")
        expect(page.locator("#connected-count")).to_have_text(
            "1 of 3 accounts connected to QuickBooks Online"
        )
        expect(page.get_by_role("button", name="Reconnect")).to_be_visible()
        expect(page.locator("#liveness")).to_contain_text("Live")
