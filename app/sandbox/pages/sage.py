"""A stand-in for Sage's "Connect Bank" (docs: integrations/bank-feeds/sage-bank-feeds/sage-bank-feeds-setup,
bank-feeds/integrations/sage/mapping): the SMB types the data connection id and the OTP from
``POST …/bankFeeds/otp``, or signs in at the fintech's login page (Portal ``sageLoginUrl``), which calls
``PUT …/authorization`` and sends the SMB back here. Then the SMB selects accounts; the connection turns
Linked and the accounts connected, except on products that ask the SMB to Confirm each one first.

Signed in, the stand-in carries a random session token in its forms, as Sage's own session would.
"""

import secrets
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.sandbox.context import lifecycle, public_root, sandbox_state
from app.sandbox.models import AccountStatus, Connection, ConnectionStatus
from app.sandbox.pages.render import NOTHING, Safe, first, form_fields, join, message, page, render
from app.sandbox.platforms import SAGE
from app.sandbox.state import SandboxState

router = APIRouter()

# Codat: "On some Sage supported products, the SMB user may need to click Confirm"; which ones it does not
# say. Here Sage 50 asks for it and Sage Accounting does not (a stand-in choice).
_NEEDS_CONFIRM = {"Sage Accounting": False, "Sage 50": True}
_REFUSED = "That connection ID and one-time password don't match. Get a new password from your bank's app."


@router.get("/sage/")
async def start(request: Request) -> HTMLResponse:
    return _start_page(request)


@router.post("/sage/sign-in")
async def sign_in(request: Request) -> HTMLResponse:
    state, fields = sandbox_state(request), await form_fields(request)
    connection_id = first(fields, "connectionId").strip()
    connection = _connection_for_otp(state, connection_id, first(fields, "otp").strip())
    if connection is None:
        return _start_page(request, connection_id, _error(_REFUSED), 401)
    connection.sage.otp = None  # one-time
    return _accounts_page(request, _signed_in(connection))


@router.post("/sage/web-login")
async def web_login(request: Request) -> Response:
    state = sandbox_state(request)
    login_url = state.portal.sage_login_url
    if login_url is None:
        return _start_page(
            request, problem=_error("This bank does not offer sign-in on its own site."), status=404
        )
    authorization_id = state.new_id()
    state.sage_authorization_ids.add(authorization_id)
    query = urlencode(
        {"authorizationId": authorization_id, "redirectUri": f"{public_root(request)}/sage/authorized"}
    )
    return RedirectResponse(f"{login_url}?{query}", status_code=303)


@router.get("/sage/authorized")
async def authorized(request: Request, state: str = "") -> HTMLResponse:
    """Where the fintech's login page sends the SMB back, with ``?state={authId}``."""
    connection = _connection_for_authorization(sandbox_state(request), state)
    if connection is None:
        return _start_page(request, problem=_error("Sign-in did not complete. Start again."), status=401)
    connection.sage.authorization_id = None  # used once
    return _accounts_page(request, _signed_in(connection))


@router.post("/sage/accounts")
async def choose_accounts(request: Request) -> HTMLResponse:
    fields = await form_fields(request)
    connection = _session_connection(sandbox_state(request), first(fields, "session"))
    if connection is None:
        return _start_page(request, problem=_error("Your Sage session has ended. Start again."), status=401)
    chosen = [connection.accounts[a] for a in fields.get("account", []) if a in connection.accounts]
    product = first(fields, "product")
    if not chosen or product not in _NEEDS_CONFIRM:
        return _accounts_page(
            request, connection, _error("Select at least one account and your Sage product."), 400
        )
    life, today = lifecycle(request), sandbox_state(request).clock.now().date()
    connection.sage.product = product
    if connection.status is not ConnectionStatus.linked:  # a later visit adding accounts sends no event
        life.set_connection_status(connection, ConnectionStatus.linked)
    for account in chosen:
        if _NEEDS_CONFIRM[product]:
            connection.sage.awaiting_confirmation.append(account.id)
        else:
            life.connect_account(connection, account, today)
    return _banking_page(request, connection)


@router.post("/sage/confirm")
async def confirm(request: Request) -> HTMLResponse:
    fields = await form_fields(request)
    connection = _session_connection(sandbox_state(request), first(fields, "session"))
    if connection is None:
        return _start_page(request, problem=_error("Your Sage session has ended. Start again."), status=401)
    account_id = first(fields, "account")
    if account_id not in connection.sage.awaiting_confirmation:
        return _banking_page(request, connection, _error("That account is not awaiting confirmation."), 400)
    connection.sage.awaiting_confirmation.remove(account_id)
    # Codat: the feed start date of a Sage account is the time it connected.
    lifecycle(request).connect_account(
        connection, connection.accounts[account_id], sandbox_state(request).clock.now().date()
    )
    return _banking_page(request, connection)


def _connection_for_otp(state: SandboxState, connection_id: str, otp: str) -> Connection | None:
    connection = state.connections.get(connection_id)
    if connection is None or connection.platform_key != SAGE.key or connection.sage.otp is None:
        return None
    held = connection.sage.otp
    valid = held.is_valid(state.clock.now()) and secrets.compare_digest(held.code, otp)
    return connection if valid else None


def _connection_for_authorization(state: SandboxState, authorization_id: str) -> Connection | None:
    return next(
        (
            c
            for c in state.connections.values()
            if c.sage.authorization_id and secrets.compare_digest(c.sage.authorization_id, authorization_id)
        ),
        None,
    )


def _session_connection(state: SandboxState, session: str) -> Connection | None:
    if not session:
        return None
    return next(
        (
            c
            for c in state.connections.values()
            if c.sage.session and secrets.compare_digest(c.sage.session, session)
        ),
        None,
    )


def _signed_in(connection: Connection) -> Connection:
    connection.sage.session = secrets.token_urlsafe(24)
    return connection


def _error(text: str) -> Safe:
    return message(text, kind="error", element_id="error")


def _start_page(
    request: Request, connection_id: str = "", problem: Safe = NOTHING, status: int = 200
) -> HTMLResponse:
    state, root = sandbox_state(request), public_root(request)
    web_login = NOTHING
    if state.portal.sage_login_url:
        web_login = render(
            "sage_web_login.html", action=f"{root}/sage/web-login", app_name=state.portal.app_name
        )
    body = render(
        "sage_start.html",
        message=problem,
        action=f"{root}/sage/sign-in",
        connection_id=connection_id,
        web_login=web_login,
    )
    return page("Sage: Connect Bank", body, status_code=status)


def _accounts_page(
    request: Request, connection: Connection, note: Safe = NOTHING, status: int = 200
) -> HTMLResponse:
    offered = [a for a in connection.accounts.values() if a.status is not AccountStatus.connected]
    rows = join(
        [
            render(
                "sage_account_row.html",
                id=a.id,
                name=a.account_name,
                number=a.account_number,
                currency=a.currency,
            )
            for a in offered
            if a.id not in connection.sage.awaiting_confirmation
        ]
    )
    products = join([render("mapping_option.html", id=p, name=p) for p in _NEEDS_CONFIRM])
    body = render(
        "sage_accounts.html",
        company=sandbox_state(request).companies[connection.company_id].name,
        message=note,
        action=f"{public_root(request)}/sage/accounts",
        session=connection.sage.session or "",
        rows=rows,
        products=products,
    )
    return page("Sage: select accounts", body, status_code=status)


def _banking_page(
    request: Request, connection: Connection, note: Safe = NOTHING, status: int = 200
) -> HTMLResponse:
    root, session = public_root(request), connection.sage.session or ""
    rows = []
    for account in connection.accounts.values():
        awaiting = account.id in connection.sage.awaiting_confirmation
        if not awaiting and account.status is not AccountStatus.connected:
            continue
        confirm = NOTHING
        if awaiting:
            confirm = render(
                "sage_confirm.html", action=f"{root}/sage/confirm", session=session, id=account.id
            )
        status_text = "Pending Confirmation" if awaiting else "Connected"
        rows.append(
            render(
                "sage_banking_row.html",
                id=account.id,
                name=account.account_name,
                status=status_text,
                confirm=confirm,
            )
        )
    body = render("sage_banking.html", product=connection.sage.product, message=note, rows=join(rows))
    return page("Sage: Banking Cloud", body, status_code=status)


def not_a_link_page() -> HTMLResponse:
    """What a Sage connection's linkUrl shows: Codat says never to send it; Sage connections start in Sage."""
    return page("Not used for Sage", render("sage_not_link.html"), status_code=404)
