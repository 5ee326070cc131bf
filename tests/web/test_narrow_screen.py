"""A phone, 390 x 844: the demo's screens (the software picker, mapping, Sage's code, disconnecting), the
Codat Link page, the QuickBooks stand-in and Xero's consent fit the screen, nothing wider than it.
Screenshots go to tests/artifacts/narrow/ (gitignored)."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser import ARTIFACTS, chromium

pytestmark = pytest.mark.browser
SHOTS = ARTIFACTS / "narrow"
PHONE = {"width": 390, "height": 844}

# Every element whose right edge passes the viewport's, and whether the page scrolls sideways.
OVERFLOW = """() => ({
  scrolls: document.scrollingElement.scrollWidth > innerWidth,
  wider: [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5 && !e.closest(".visually-hidden"))
    .map((e) => `${e.tagName.toLowerCase()}#${e.id} ${e.className} (${e.getBoundingClientRect().right} px)`),
})"""


@pytest.fixture
def phone(demo_url: str) -> Iterator[Page]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        # Not is_mobile: a mobile viewport widens to fit what overflows, which would hide the overflow.
        context = browser.new_context(viewport=PHONE, device_scale_factor=2)
        yield context.new_page()
        context.close()


def assert_fits(page: Page, name: str) -> None:
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)
    overflow = page.evaluate(OVERFLOW)
    assert overflow == {"scrolls": False, "wider": []}, f"{name} at {page.url}: {overflow}"


def test_the_demo_the_link_page_and_quickbooks_fit_a_390_px_screen(phone: Page, demo_url: str) -> None:
    phone.goto(demo_url)
    expect(phone.locator("#connected-count")).to_have_text("0 of 3 accounts connected")
    phone.get_by_label("Where do you keep your books?").select_option(label="QuickBooks Online")
    assert_fits(phone, "1-demo")

    phone.get_by_role("button", name="Connect to QuickBooks Online").click()
    expect(phone.locator("#heading")).to_have_text("Connect to QuickBooks Online Bank Feeds")
    phone.get_by_role("button", name="Get credentials").click()
    username = phone.locator("#credential-username").inner_text()
    password = phone.locator("#credential-password").inner_text()
    assert_fits(phone, "2-link-page")

    phone.get_by_role("link", name="Open QuickBooks").click()
    phone.get_by_label("Username").fill(username)
    phone.get_by_label("Password").fill(password)
    phone.get_by_role("button", name="Sign in").click()
    expect(phone.locator("input[name=account]")).to_have_count(3)
    assert_fits(phone, "3-quickbooks-accounts")


def test_mapping_the_sage_code_and_disconnecting_fit_a_390_px_screen(phone: Page, demo_url: str) -> None:
    phone.goto(demo_url)
    phone.get_by_label("Where do you keep your books?").select_option(label="Xero")
    expect(phone.get_by_role("button", name="Sign in to Xero")).to_be_enabled()
    assert_fits(phone, "4-demo-xero-picked")

    phone.get_by_role("button", name="Sign in to Xero").click()
    expect(phone.locator("#heading")).to_have_text("Allow your app to access Xero?")
    assert_fits(phone, "5-xero-consent")

    phone.get_by_role("button", name="Allow access").click()
    phone.get_by_role("link", name="Return to").click()
    checking = phone.get_by_label("Xero account for Operating checking")
    checking.evaluate("select => { select.options[0].value = 'no-such-account'; }")  # a stale option
    phone.get_by_role("button", name="Map Operating checking").click()
    expect(phone.locator("#map-error-acc-checking")).to_be_visible()
    assert_fits(phone, "6-demo-mapping")

    phone.get_by_role("button", name="Map Tax reserve savings").click()
    expect(phone.locator("#mapping-acc-savings .target-name")).to_have_text("USD Account")
    assert_fits(phone, "7-demo-mapped")

    phone.get_by_role("button", name="Disconnect from Xero").click()
    expect(phone.get_by_role("dialog", name="Disconnect from Xero?")).to_be_visible()
    assert_fits(phone, "8-demo-disconnect")

    phone.get_by_role("dialog").get_by_role("button", name="Disconnect").click()
    expect(phone.locator("#connection-status")).to_have_text("Xero connection: disconnected")
    phone.get_by_label("Where do you keep your books?").select_option(label="Sage")
    phone.get_by_role("button", name="Get a code for Sage").click()
    expect(phone.locator("#sage-expiry")).to_be_visible()
    assert_fits(phone, "9-demo-sage-code")
