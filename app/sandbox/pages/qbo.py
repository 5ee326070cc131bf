"""A stand-in for QuickBooks Online's "Link account" step: sign in with the one-time credentials, pick
source accounts and a feed start date, Connect; disconnect an account later.

As QuickBooks does (Codat's QBO Bank Feeds pages): a feed start date more than 7 days back is ignored (the
feed starts 7 days back); revoked credentials are refused, and Codat reports that with ``connection.failed``;
a disconnect shows at Codat only after the disconnect lag (10 days).
"""

from dataclasses import dataclass
from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.sandbox.context import lifecycle, public_root, sandbox_state
from app.sandbox.models import AccountStatus, Connection, Credentials, SourceAccount
from app.sandbox.pages.render import NOTHING, Safe, first, form_fields, join, message, page, render

router = APIRouter()

_REFUSED = "Those credentials are not valid, or they have been revoked. Get new ones from the Connect page."
# QBO ignores a feed start date chosen further back than this.
MAX_FEED_START_DAYS_BACK = 7


@dataclass(frozen=True)
class _SignedIn:
    connection: Connection
    credentials: Credentials


@router.get("/qbo/")
async def sign_in(request: Request) -> HTMLResponse:
    return _sign_in_page(request)


@router.post("/qbo/accounts")
async def choose_accounts(request: Request) -> HTMLResponse:
    fields = await form_fields(request)
    signed_in = _signed_in(request, fields)
    if signed_in is None:
        return _refused(request, fields)
    return _accounts_page(request, signed_in)


@router.post("/qbo/connect")
async def connect(request: Request) -> HTMLResponse:
    fields = await form_fields(request)
    signed_in = _signed_in(request, fields)
    if signed_in is None:
        return _refused(request, fields)
    known = signed_in.connection.accounts
    accounts = [known[account_id] for account_id in fields.get("account", []) if account_id in known]
    start = _feed_start(first(fields, "feedStartDate"), sandbox_state(request).clock.now().date())
    if not accounts:
        return _accounts_page(request, signed_in, _error("Choose at least one account."), 400)
    if start is None:
        return _accounts_page(
            request, signed_in, _error("Choose a feed start date that is not in the future."), 400
        )
    start = max(start, sandbox_state(request).clock.now().date() - timedelta(days=MAX_FEED_START_DAYS_BACK))
    lifecycle(request).connect_accounts(signed_in.connection, accounts, start, signed_in.credentials)
    return _connected_page(request, accounts, start)


@router.post("/qbo/disconnect")
async def disconnect(request: Request) -> HTMLResponse:
    fields = await form_fields(request)
    signed_in = _signed_in(request, fields)
    if signed_in is None:
        return _refused(request, fields)
    account = signed_in.connection.accounts.get(first(fields, "account"))
    if account is None:
        return _accounts_page(request, signed_in, _error("No such account."), 400)
    lifecycle(request).disconnect_in_quickbooks(signed_in.connection, account)
    notice = message(
        f"{account.account_name} was disconnected. QuickBooks tells Codat in about 10 days.",
        kind="notice",
        element_id="notice",
    )
    return _accounts_page(request, signed_in, notice)


def _error(text: str) -> Safe:
    return message(text, kind="error", element_id="error")


def _refused(request: Request, fields: dict[str, list[str]]) -> HTMLResponse:
    username, password = first(fields, "username"), first(fields, "password")
    revoked_on = sandbox_state(request).connection_for_revoked_credentials(username, password)
    if revoked_on is not None:
        lifecycle(request).connection_failed(revoked_on, "401", "QuickBooks refused revoked credentials.")
    return _sign_in_page(request, username, _error(_REFUSED))


def _signed_in(request: Request, fields: dict[str, list[str]]) -> _SignedIn | None:
    username, password = first(fields, "username"), first(fields, "password")
    connection = sandbox_state(request).connection_for_credentials(username, password)
    return _SignedIn(connection, Credentials(username.strip(), password.strip())) if connection else None


def _feed_start(raw: str, today: date) -> date | None:
    try:
        chosen = date.fromisoformat(raw)
    except ValueError:
        return None
    return chosen if chosen <= today else None


def _sign_in_page(request: Request, username: str = "", problem: Safe = NOTHING) -> HTMLResponse:
    body = render(
        "qbo_signin.html", message=problem, action=f"{public_root(request)}/qbo/accounts", username=username
    )
    return page("QuickBooks: Link account", body, status_code=401 if problem else 200)


def _accounts_page(
    request: Request, signed_in: _SignedIn, note: Safe = NOTHING, status_code: int = 200
) -> HTMLResponse:
    root, credentials = public_root(request), signed_in.credentials
    accounts = list(signed_in.connection.accounts.values())
    company = sandbox_state(request).companies[signed_in.connection.company_id]
    body = render(
        "qbo_accounts.html",
        company_name=company.name,
        message=note,
        connect_action=f"{root}/qbo/connect",
        username=credentials.username,
        password=credentials.password,
        rows=join([_account_row(a) for a in accounts]),
        today=sandbox_state(request).clock.now().date().isoformat(),
        disconnect_forms=join(
            [
                render(
                    "qbo_disconnect.html",
                    action=f"{root}/qbo/disconnect",
                    id=a.id,
                    username=credentials.username,
                    password=credentials.password,
                )
                for a in accounts
                if a.status is AccountStatus.connected
            ]
        ),
    )
    return page("QuickBooks: choose accounts", body, status_code=status_code)


def _account_row(account: SourceAccount) -> Safe:
    disconnect = NOTHING
    if account.status is AccountStatus.connected:
        disconnect = render("qbo_disconnect_button.html", id=account.id)
    return render(
        "qbo_account_row.html",
        id=account.id,
        name=account.account_name,
        number=account.account_number,
        currency=account.currency,
        status=account.status.value,
        disconnect=disconnect,
    )


def _connected_page(request: Request, accounts: list[SourceAccount], start: date) -> HTMLResponse:
    portal = sandbox_state(request).portal
    return_link = NOTHING
    if portal.redirect_url:
        return_link = render("qbo_return.html", href=portal.redirect_url, app_name=portal.app_name)
    items = join([render("qbo_connected_item.html", id=a.id, name=a.account_name) for a in accounts])
    body = render(
        "qbo_connected.html", feed_start_date=start.isoformat(), items=items, return_link=return_link
    )
    return page("QuickBooks: bank feed connected", body)
