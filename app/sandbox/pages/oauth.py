"""Codat Link for the platforms Codat maps (Xero, NetSuite, FreeAgent, Exact): a stand-in for the platform's
OAuth consent screen at the linkUrl, then Codat's hosted mapping page (docs: bank-feeds/mapping/codat-ui).

Allowing access links the connection (``connection.connected``, or ``.reconnected``) and opens the SMB's
books; each account mapped on the page goes ``connecting``, then ``connected`` with its webhook, exactly as
through the mapping API, which shares ``app.sandbox.mapping``.
"""

from datetime import date

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.sandbox import mapping
from app.sandbox.context import lifecycle, public_root, sandbox_state
from app.sandbox.models import AccountStatus, Connection, ConnectionStatus, SourceAccount
from app.sandbox.pages.render import NOTHING, Safe, first, form_fields, join, message, page, render
from app.sandbox.platforms import Flow, profile
from app.sandbox.state import SandboxState
from app.sandbox.views import link_path

router = APIRouter()

LINK = "/link/companies/{companyId}/connections/{connectionId}"


def consent_page(request: Request, connection: Connection, otp: str) -> HTMLResponse:
    """What the linkUrl shows for a platform Codat maps: the platform asks the SMB to allow access."""
    state, platform = sandbox_state(request), profile(connection.platform_key)
    body = render(
        "oauth_consent.html",
        platform=platform.name,
        app_name=state.portal.app_name,
        organisation=state.companies[connection.company_id].name,
        action=f"{_base(request, connection)}/consent",
        otp=otp,
    )
    return page(f"{platform.name}: allow access", body)


@router.post(LINK + "/consent")
async def consent(request: Request, companyId: str, connectionId: str) -> Response:
    fields = await form_fields(request)
    otp = first(fields, "otp")
    connection = _mapped_connection(sandbox_state(request), companyId, connectionId, otp)
    if connection is None:
        return _expired()
    platform = profile(connection.platform_key).name
    if first(fields, "decision") != "allow":
        return page("Access was not granted", render("oauth_denied.html", platform=platform))
    mapping.open_books(sandbox_state(request), connection)
    if connection.status is not ConnectionStatus.linked:  # allowing again changes nothing, sends nothing
        lifecycle(request).set_connection_status(connection, ConnectionStatus.linked)
    return RedirectResponse(f"{_base(request, connection)}/mapping?otp={otp}", status_code=303)


@router.get(LINK + "/mapping")
async def mapping_page(request: Request, companyId: str, connectionId: str, otp: str = "") -> HTMLResponse:
    connection = _mapped_connection(sandbox_state(request), companyId, connectionId, otp)
    if connection is None or connection.status is not ConnectionStatus.linked:
        return _expired()
    return _mapping_page(request, connection, otp)


@router.post(LINK + "/mapping")
async def map_one(request: Request, companyId: str, connectionId: str) -> Response:
    state, fields = sandbox_state(request), await form_fields(request)
    otp = first(fields, "otp")
    connection = _mapped_connection(state, companyId, connectionId, otp)
    if connection is None:
        return _expired()
    start = _feed_start(first(fields, "feedStartDate"), state.clock.now().date())
    if start is None:
        return _mapping_page(
            request, connection, otp, _error("Choose a feed start date that is not in the future.")
        )
    target_id = first(fields, "targetAccountId") or None
    try:
        mapping.map_account(
            state, lifecycle(request), connection, first(fields, "sourceAccountId"), target_id, start
        )
    except mapping.MappingRefused as exc:
        return _mapping_page(request, connection, otp, _error(exc.message))
    return RedirectResponse(f"{_base(request, connection)}/mapping?otp={otp}", status_code=303)


def _mapped_connection(
    state: SandboxState, company_id: str, connection_id: str, otp: str
) -> Connection | None:
    """The connection, if it is on a platform Codat maps and ``otp`` is one of its live link OTPs."""
    connection = state.find_connection(company_id, connection_id)
    if connection is None or profile(connection.platform_key).flow is not Flow.link_and_map:
        return None
    return connection if state.otp_accepted(connection, otp) else None


def _base(request: Request, connection: Connection) -> str:
    return f"{public_root(request)}{link_path(connection)}"


def _feed_start(raw: str, today: date) -> date | None:
    try:
        chosen = date.fromisoformat(raw)
    except ValueError:
        return None
    return chosen if chosen <= today else None


def _error(text: str) -> Safe:
    return message(text, kind="error", element_id="error")


def _expired() -> HTMLResponse:
    body = render(
        "link_expired.html",
        heading="This link has expired",
        explain="For your security, this link only works for a limited time.",
        next_step="Go back to the app and click Connect again to get a new link.",
    )
    return page("This link has expired", body, status_code=401)


def _mapping_page(request: Request, connection: Connection, otp: str, note: Safe = NOTHING) -> HTMLResponse:
    state, platform = sandbox_state(request), profile(connection.platform_key)
    rows = join([_row(request, connection, account, otp) for account in connection.accounts.values()])
    return_link = NOTHING
    if state.portal.redirect_url:
        return_link = render(
            "qbo_return.html", href=state.portal.redirect_url, app_name=state.portal.app_name
        )
    body = render(
        "mapping_page.html",
        platform=platform.name,
        company=state.companies[connection.company_id].name,
        message=note,
        rows=rows,
        return_link=return_link,
    )
    return page(f"Codat: map accounts to {platform.name}", body, status_code=400 if note else 200)


def _row(request: Request, connection: Connection, account: SourceAccount, otp: str) -> Safe:
    books = connection.books
    if account.status in (AccountStatus.connecting, AccountStatus.connected) and books is not None:
        target = books.accounts[account.target_account_id or ""]
        detail = render("mapping_target.html", id=account.id, name=target.name)
    else:
        detail = _form(request, connection, account, otp)
    return render(
        "mapping_row.html",
        id=account.id,
        name=account.account_name,
        number=account.account_number,
        currency=account.currency,
        status=account.status.value,
        detail=detail,
    )


def _form(request: Request, connection: Connection, account: SourceAccount, otp: str) -> Safe:
    targets = mapping.options(connection, account) or []
    options = join([render("mapping_option.html", id=t.id, name=t.name) for t in targets])
    return render(
        "mapping_form.html",
        action=f"{_base(request, connection)}/mapping",
        otp=otp,
        id=account.id,
        options=options,
        today=sandbox_state(request).clock.now().date().isoformat(),
    )
