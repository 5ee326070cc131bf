"""A person in headless Chromium picks other accounting software in the demo: Xero (sign in, then map each
account on the demo's own screen) and Sage (a code typed into Sage, then Confirm). Each ends with a
transaction the bank sends reaching the books; Xero's ends with a switch to Sage.

Screenshots go to tests/artifacts/demo/xero/ and sage/ (gitignored).
"""

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.web.conftest import ARTIFACTS, Demo
from tests.web.support import Steps, deliver_one, row

pytestmark = pytest.mark.browser


def steps_in(page: Page, folder: str) -> Steps:
    (ARTIFACTS / folder).mkdir(parents=True, exist_ok=True)
    return Steps(page, ARTIFACTS / folder)


def mapping(page: Page, account_id: str) -> Locator:
    return page.locator(f"#mapping-{account_id}")


def test_a_xero_user_signs_in_maps_two_accounts_here_and_a_transaction_reaches_xero(
    page: Page, demo: Demo
) -> None:
    step = steps_in(page, "xero")
    with step("pick-xero"):
        page.goto(demo.url)
        page.get_by_label("Where do you keep your books?").select_option(label="Xero")
        expect(page.locator("#platform-hint")).to_contain_text("choose here the Xero account")
        page.get_by_label("Include Business credit card").uncheck()

    with step("xero-consent"):
        page.get_by_role("button", name="Sign in to Xero").click()
        expect(page.locator("#heading")).to_have_text("Allow your app to access Xero?")

    with step("back-to-mapping"):
        page.get_by_role("button", name="Allow access").click()
        page.get_by_role("link", name="Return to").click()
        expect(page.locator("#mapping-heading")).to_be_visible()
        expect(page.locator("#action-message")).to_have_text(
            "Choose the account in Xero that each bank account feeds."
        )
        checking = page.get_by_label("Xero account for Operating checking")
        expect(checking.locator("option")).to_have_text(["USD Account", "Create a new account"])

    with step("mapping-refused"):
        # Options can go stale (another account took that target in Xero): the API's 422 shows at the select.
        checking.evaluate("select => { select.options[0].value = 'no-such-account'; }")
        mapping(page, "acc-checking").get_by_role("button", name="Map Operating checking").click()
        error = page.locator("#map-error-acc-checking")
        expect(error).to_have_text(
            "Xero offers only bank accounts in USD that no other account feeds for this account. "
            "Choose another account, or create a new one."
        )
        expect(checking).to_have_attribute("aria-invalid", "true")
        expect(checking).to_have_attribute("aria-describedby", "map-error-acc-checking")

    with step("mapped-one"):
        checking.select_option(label="USD Account")
        mapping(page, "acc-checking").get_by_role("button", name="Map Operating checking").click()
        expect(mapping(page, "acc-checking").locator(".target-name")).to_have_text("USD Account")
        # The USD account now feeds checking: savings is offered only a new account.
        savings = page.get_by_label("Xero account for Tax reserve savings")
        expect(savings.locator("option")).to_have_text(["Create a new account"])

    with step("mapped-both"):
        mapping(page, "acc-savings").get_by_role("button", name="Map Tax reserve savings").click()
        expect(row(page, "acc-checking").locator(".status")).to_have_text("connected")
        expect(row(page, "acc-savings").locator(".status")).to_have_text("connected")
        expect(page.locator("#connected-count")).to_have_text("2 of 3 accounts connected to Xero")
        expect(row(page, "acc-checking").locator(".target")).to_have_text("Into USD Account in Xero")
        expect(page.locator("#mapping")).to_be_hidden()
        expect(page.get_by_role("button", name="Add accounts to Xero")).to_be_visible()

    assert deliver_one(demo, "acc-checking") == ["acc-checking-t1"]

    with step("sage-refused-while-xero"):
        page.get_by_label("Where do you keep your books?").select_option(label="Sage")
        page.get_by_role("button", name="Get a code for Sage").click()
        expect(page.locator("#software-problem")).to_have_text(
            "Your bank feed already goes to Xero, and a bank account can feed only one set of books (or its "
            "transactions would be counted twice). Disconnect from Xero first, then connect to Sage."
        )

    with step("disconnect-dialog"):
        page.get_by_role("button", name="Disconnect from Xero").click()
        expect(page.get_by_role("dialog", name="Disconnect from Xero?")).to_be_visible()

    with step("disconnected"):
        page.get_by_role("dialog").get_by_role("button", name="Disconnect").click()
        expect(page.locator("#connection-status")).to_have_text("Xero connection: disconnected")
        expect(page.get_by_role("button", name="Reconnect to Xero")).to_be_visible()

    with step("switched-to-sage"):
        page.get_by_label("Where do you keep your books?").select_option(label="Sage")
        page.get_by_role("button", name="Get a code for Sage").click()
        expect(page.locator("#sage-code")).to_have_text(re.compile(r"^\d{6}$"))
        expect(page.locator("#sage-connection-id")).not_to_be_empty()


def test_a_sage_user_types_the_code_shown_here_into_sage_confirms_and_a_transaction_reaches_sage(
    page: Page, demo: Demo
) -> None:
    step = steps_in(page, "sage")
    with step("pick-sage"):
        page.goto(demo.url)
        page.get_by_label("Where do you keep your books?").select_option(label="Sage")
        expect(page.locator("#platform-hint")).to_contain_text("a connection ID and a one-time code")
        page.get_by_label("Include Business credit card").uncheck()

    with step("code-shown"):
        page.get_by_role("button", name="Get a code for Sage").click()
        expect(page.get_by_role("heading", name="Connect in Sage")).to_be_visible()
        expect(page.locator("#sage-code")).to_have_text(re.compile(r"^\d{6}$"))
        expect(page.locator("#sage-expiry")).to_contain_text("The code works once, until")
        first_code = page.locator("#sage-code").inner_text()

    with step("new-code"):
        page.get_by_role("button", name="New code").click()
        expect(page.locator("#sage-code")).not_to_have_text(first_code)  # 1 in a million: the same six digits
        connection_id = page.locator("#sage-connection-id").inner_text()
        code = page.locator("#sage-code").inner_text()

    with page.context.expect_page() as opened:
        page.get_by_role("link", name="open the Sage stand-in").click()
    sage = opened.value

    with step("sage-connect-bank", sage):
        expect(sage.locator("#heading")).to_have_text("Connect Bank")
        sage.get_by_label("Connection ID").fill(connection_id)
        sage.get_by_label("One-time password").fill(code)

    with step("sage-accounts", sage):
        sage.get_by_role("button", name="Submit").click()
        expect(sage.locator("#heading")).to_have_text("Select the bank account to connect")
        sage.get_by_label("Operating checking").check()
        sage.get_by_label("Tax reserve savings").check()
        sage.get_by_label("Sage product").select_option("Sage 50")

    with step("sage-pending-confirmation", sage):
        sage.get_by_role("button", name="OK").click()
        expect(sage.locator("#feed-status-acc-checking")).to_have_text("Pending Confirmation")

    with step("confirm-instruction"):
        expect(page.locator("#sage-confirm")).to_contain_text("choose Confirm next to each account")
        expect(page.locator("#sage-enter")).to_be_hidden()
        expect(row(page, "acc-checking").locator(".status")).to_have_text("pending")

    with step("sage-confirmed", sage):
        sage.locator("#confirm-acc-checking").click()
        sage.locator("#confirm-acc-savings").click()
        expect(sage.locator("#feed-status-acc-savings")).to_have_text("Connected")

    with step("demo-connected"):
        expect(row(page, "acc-checking").locator(".status")).to_have_text("connected")
        expect(row(page, "acc-savings").locator(".status")).to_have_text("connected")
        expect(page.locator("#connected-count")).to_have_text("2 of 3 accounts connected to Sage")
        expect(page.locator("#sage")).to_be_hidden()

    assert deliver_one(demo, "acc-checking") == ["acc-checking-t1"]
