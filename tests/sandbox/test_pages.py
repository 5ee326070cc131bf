"""The Link page at the linkUrl and the QuickBooks stand-in, driven over HTTP as a browser would post them."""

import html
import re
from datetime import timedelta

import pytest

from app.sandbox.models import AccountStatus, ConnectionStatus

HOUR = 3600


@pytest.fixture
async def connection(sandbox) -> dict:
    connection = await sandbox.connection()
    for account_id in ("ac-001", "ac-002", "ac-003"):
        await sandbox.account(connection, account_id)
    return connection


def otp_of(connection: dict) -> str:
    return connection["linkUrl"].rsplit("otp=", 1)[1]


def link_base(connection: dict) -> str:
    return connection["linkUrl"].split("/start?", 1)[0]


def shown(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert match, f"no #{element_id} in page"
    return html.unescape(match.group(1))


async def get_credentials(sandbox, connection: dict) -> tuple[str, str]:
    page = await sandbox.client.post(link_base(connection) + "/credentials", data={"otp": otp_of(connection)})
    assert page.status_code == 200
    return shown(page.text, "credential-username"), shown(page.text, "credential-password")


async def test_the_link_page_greets_in_english_with_the_callout(sandbox, connection) -> None:
    page = await sandbox.client.get(connection["linkUrl"])
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert shown(page.text, "heading") == "Connect to QuickBooks Online Bank Feeds"
    assert shown(page.text, "callout-title") == "Connecting to QuickBooks"
    assert page.text.index('id="callout"') < page.text.index('id="get-credentials"')
    assert shown(page.text, "get-credentials") == "Get credentials"


async def test_the_link_page_speaks_french_on_request(sandbox, connection) -> None:
    sandbox.state.set_settings(
        callout={"fr": {"title": "Besoin d'aide ?", "body": "Appelez-nous & c'est réglé."}}
    )
    page = await sandbox.client.get(connection["linkUrl"] + "&lang=fr")
    assert '<html lang="fr">' in page.text
    assert shown(page.text, "heading") == "Connexion aux flux bancaires QuickBooks Online"
    assert (shown(page.text, "callout-title"), shown(page.text, "callout-body")) == (
        "Besoin d'aide ?",
        "Appelez-nous & c'est réglé.",
    )
    assert shown(page.text, "lang-toggle") == "English"


async def test_the_french_page_falls_back_to_the_english_callout(sandbox, connection) -> None:
    sandbox.state.set_settings(
        callout={"en": {"title": "Help", "body": "Call us"}, "fr": {"title": "", "body": ""}}
    )
    page = await sandbox.client.get(connection["linkUrl"] + "&lang=fr")
    assert shown(page.text, "callout-title") == "Help"


async def test_no_callout_box_without_callout_text(sandbox, connection) -> None:
    sandbox.state.set_settings(callout={"en": {"title": "", "body": ""}})
    page = await sandbox.client.get(connection["linkUrl"])
    assert 'id="callout"' not in page.text


@pytest.mark.parametrize("lang", ["en", "fr"])
async def test_a_wrong_or_lapsed_otp_gets_the_expired_page(sandbox, connection, lang) -> None:
    wrong = connection["linkUrl"].replace(
        otp_of(connection), "000000" if otp_of(connection) != "000000" else "1"
    )
    sandbox.state.clock.advance(HOUR)
    for url in (wrong, connection["linkUrl"]):
        page = await sandbox.client.get(f"{url}&lang={lang}")
        assert page.status_code == 401
        expected = {"en": "Go back to the app and click Connect again", "fr": "Retournez dans l'application"}[
            lang
        ]
        assert expected in shown(page.text, "expired-next-step")


async def test_getting_credentials_shows_them_once_and_links_to_quickbooks(sandbox, connection) -> None:
    page = await sandbox.client.post(link_base(connection) + "/credentials", data={"otp": otp_of(connection)})
    username, password = shown(page.text, "credential-username"), shown(page.text, "credential-password")
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", username)
    assert sandbox.state.connection_for_credentials(username, password).id == connection["id"]
    assert re.search(r'id="open-quickbooks" href="http://sandbox\.test/qbo/"', page.text)
    assert shown(page.text, "revoke-credentials") == "Revoke credentials"


async def test_credentials_need_a_valid_otp(sandbox, connection) -> None:
    sandbox.state.clock.advance(HOUR)
    page = await sandbox.client.post(link_base(connection) + "/credentials", data={"otp": otp_of(connection)})
    assert page.status_code == 401
    assert sandbox.state.connections[connection["id"]].credentials == []


async def test_revoking_from_the_link_page_revokes_all(sandbox, connection) -> None:
    await get_credentials(sandbox, connection)
    await get_credentials(sandbox, connection)
    page = await sandbox.client.post(link_base(connection) + "/revoke", data={"otp": otp_of(connection)})
    assert page.status_code == 200
    assert 'id="revoked"' in page.text
    assert sandbox.state.connections[connection["id"]].credentials == []


async def test_quickbooks_refuses_wrong_or_revoked_credentials(sandbox, connection) -> None:
    username, password = await get_credentials(sandbox, connection)
    wrong = await sandbox.client.post("/qbo/accounts", data={"username": username, "password": "nope"})
    assert wrong.status_code == 401
    assert "not valid" in shown(wrong.text, "error")
    await sandbox.client.delete(sandbox.accounts_path(connection) + "/credentials")
    revoked = await sandbox.client.post("/qbo/accounts", data={"username": username, "password": password})
    assert revoked.status_code == 401


async def test_connecting_in_quickbooks_links_the_chosen_accounts(sandbox, connection) -> None:
    username, password = await get_credentials(sandbox, connection)
    signed_in = await sandbox.client.post("/qbo/accounts", data={"username": username, "password": password})
    assert re.findall(r'name="account" value="([^"]+)"', signed_in.text) == ["ac-001", "ac-002", "ac-003"]
    start = (sandbox.state.clock.now() - timedelta(days=3)).date().isoformat()
    form = {
        "username": username,
        "password": password,
        "account": ["ac-001", "ac-003"],
        "feedStartDate": start,
    }
    done = await sandbox.client.post("/qbo/connect", data=form)
    assert done.status_code == 200
    assert 'id="return-to-app"' not in done.text

    path = f"/companies/{connection['companyId']}/connections/{connection['id']}"
    assert (await sandbox.client.get(path)).json()["status"] == "Linked"
    assert [(a["id"], a["status"], a["feedStartDate"]) for a in await sandbox.accounts(connection)] == [
        ("ac-001", "connected", start),
        ("ac-002", "pending", None),
        ("ac-003", "connected", start),
    ]
    assert [d.event_type for d in sandbox.state.webhooks.deliveries][-3:] == [
        "connection.connected",
        "bankFeeds.sourceAccount.connected",
        "bankFeeds.sourceAccount.connected",
    ]


@pytest.mark.parametrize(
    ("accounts", "start_in_days", "error"),
    [
        ([], 0, "at least one account"),
        (["ac-001"], 1, "not in the future"),
        (["ac-001"], None, "not in the future"),
    ],
)
async def test_connect_needs_accounts_and_a_past_start_date(
    sandbox, connection, accounts, start_in_days, error
):
    username, password = await get_credentials(sandbox, connection)
    today = sandbox.state.clock.now().date()
    start = (today + timedelta(days=start_in_days)).isoformat() if start_in_days is not None else "soon"
    form = {"username": username, "password": password, "account": accounts, "feedStartDate": start}
    page = await sandbox.client.post("/qbo/connect", data=form)
    assert page.status_code == 400
    assert error in shown(page.text, "error")
    assert sandbox.state.connections[connection["id"]].status is ConnectionStatus.pending_auth
    assert all(a["status"] == "pending" for a in await sandbox.accounts(connection))


async def test_the_success_page_returns_to_the_app(sandbox, connection) -> None:
    sandbox.state.set_settings(redirectUrl="https://app.example/bank-feeds?done=1", appName="Dave's Bank")
    username, password = await get_credentials(sandbox, connection)
    form = {"username": username, "password": password, "account": "ac-001",
            "feedStartDate": sandbox.state.clock.now().date().isoformat()}  # fmt: skip
    done = await sandbox.client.post("/qbo/connect", data=form)
    assert 'href="https://app.example/bank-feeds?done=1"' in done.text
    assert shown(done.text, "return-to-app") == "Return to Dave's Bank"


async def test_a_disconnect_in_quickbooks_shows_at_codat_10_days_later(sandbox, connection) -> None:
    username, password = await get_credentials(sandbox, connection)
    today = sandbox.state.clock.now().date().isoformat()
    credentials = {"username": username, "password": password}
    await sandbox.client.post(
        "/qbo/connect", data={**credentials, "account": "ac-002", "feedStartDate": today}
    )
    page = await sandbox.client.post("/qbo/disconnect", data={**credentials, "account": "ac-002"})
    assert "was disconnected" in shown(page.text, "notice")
    account = sandbox.state.connections[connection["id"]].accounts["ac-002"]
    await sandbox.client.post("/_sandbox/clock/advance", json={"seconds": 10 * 86400 - 60})
    assert account.status is AccountStatus.connected  # QuickBooks has not told Codat yet
    await sandbox.client.post("/_sandbox/clock/advance", json={"seconds": 60})
    assert account.status is AccountStatus.disconnected


async def test_pages_escape_what_clients_send(sandbox, connection) -> None:
    await sandbox.account(connection, "ac-<b>", accountName="<script>alert(1)</script>")
    username, password = await get_credentials(sandbox, connection)
    page = await sandbox.client.post("/qbo/accounts", data={"username": username, "password": password})
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert 'value="ac-&lt;b&gt;"' in page.text


async def test_the_company_redirect_explains_how_to_connect(sandbox, connection) -> None:
    company = (await sandbox.client.get(f"/companies/{connection['companyId']}")).json()
    page = await sandbox.client.get(company["redirect"])
    assert page.status_code == 200
    assert "linkUrl" in page.text
