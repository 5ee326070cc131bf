"""What the demo's browser tests share: numbered steps with screenshots, and a transaction sent the way the
bank's own services send one, followed until it reaches the books."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page

from app.auth.tokens import mint_service_token
from app.demo import DEMO_BUSINESS_ID
from tests.web.conftest import ARTIFACTS, Demo

NEW_YORK = ZoneInfo("America/New_York")  # the demo business is in the US: its today is New York's


class Steps:
    """Numbered steps: a screenshot after each; a failed one fails the test with what the page said."""

    def __init__(self, page: Page, folder: Path = ARTIFACTS) -> None:
        self.page = page
        self.folder = folder
        self.number = 0

    @contextmanager
    def __call__(self, name: str, page: Page | None = None) -> Iterator[None]:
        """`page`: another tab the step happens in (its screenshot is of that tab)."""
        shown = page or self.page
        self.number += 1
        shot = self.folder / f"{self.number:02d}-{name}.png"
        try:
            yield
        except (AssertionError, PlaywrightError) as failure:
            shown.screenshot(path=shot.with_stem(f"{shot.stem}-failed"), full_page=True)
            said = shown.inner_text("body")
            message = f"step {name!r} failed at {shown.url}: {failure}\n--- the page said ---\n{said}"
            raise pytest.fail.Exception(message, pytrace=False) from None
        shown.screenshot(path=shot, full_page=True)


def row(page: Page, account_id: str) -> Locator:
    return page.locator(f"#account-{account_id}")


def deliver_one(demo: Demo, account_id: str) -> list[str]:
    """Send one transaction for today through the internal API; once the worker has delivered it, the ids
    of the transactions the sandbox's books hold for the account."""
    token = mint_service_token(demo.settings.auth, "demo-test", ["transactions:write", "transactions:read"])
    today = datetime.now(NEW_YORK).date()
    transaction = {
        "id": f"{account_id}-t1",
        "date": str(today),
        "description": "Flour",
        "amount": "-12.50",
        "balance": "87.50",
        "transactionType": "Debit",
    }
    path = f"/internal/v1/businesses/{DEMO_BUSINESS_ID}/accounts/{account_id}/transactions"
    with httpx.Client(base_url=demo.url, headers={"Authorization": f"Bearer {token}"}) as http:
        sent = http.post(path, json={"transactions": [transaction]})
        assert sent.status_code == 202, sent.text
        deadline = time.monotonic() + 20
        while (counts := http.get(path).json()["counts"])["delivered"] == 0:
            assert counts["failed"] == counts["refused_by_codat"] == 0, http.get(path).json()
            assert time.monotonic() < deadline, f"not delivered: {counts}"
            time.sleep(0.1)
        connection_id = _connection_id(http)
        books = http.get(
            f"/sandbox/_sandbox/connections/{connection_id}/accounts/{account_id}/bankTransactions"
        )
    assert books.status_code == 200, books.text
    return [t["id"] for t in books.json()]


def _connection_id(http: httpx.Client) -> str:
    user = http.get("/demo/token").json()["token"]
    view = http.get("/v1/bank-feed", headers={"Authorization": f"Bearer {user}"}).json()
    return str(view["connection"]["connectionId"])
