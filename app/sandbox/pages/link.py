"""The Codat-hosted QBO Bank Feeds Link page at a connection's linkUrl: Get and Revoke credentials.

Other platforms' linkUrls lead elsewhere: the OAuth consent stand-in (``oauth``) or, for Sage, nowhere."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from app.sandbox.context import public_root, sandbox_state
from app.sandbox.models import Connection
from app.sandbox.pages import oauth, sage
from app.sandbox.pages.render import NOTHING, Safe, first, form_fields, message, page, render
from app.sandbox.pages.text import TEXT, language, other_language
from app.sandbox.platforms import Flow, profile
from app.sandbox.state import SandboxState
from app.sandbox.switches import Callout
from app.sandbox.views import link_path

router = APIRouter()

LINK = "/link/companies/{companyId}/connections/{connectionId}"
_LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<circle cx="16" cy="16" r="16" fill="#2ca01c"/>'
    '<text x="16" y="21" font-size="13" text-anchor="middle" fill="#fff" font-family="sans-serif">qb</text>'
    "</svg>"
)


@router.get("/link/logo.svg")
async def logo() -> Response:
    return Response(_LOGO, media_type="image/svg+xml")


@router.get("/link/company/{companyId}")
async def company_link(request: Request, companyId: str) -> HTMLResponse:
    company = sandbox_state(request).companies.get(companyId)
    if company is None:
        return page("Not found", render("company_link.html", name="No such company"), status_code=404)
    return page(company.name, render("company_link.html", name=company.name))


@router.get(LINK + "/start")
async def start(
    request: Request, companyId: str, connectionId: str, otp: str = "", lang: str = "en"
) -> HTMLResponse:
    state, lang = sandbox_state(request), language(lang)
    connection = _with_live_otp(state, companyId, connectionId, otp)
    if connection is None:
        return _expired(lang)
    flow = profile(connection.platform_key).flow
    if flow is Flow.sage:
        return sage.not_a_link_page()
    if flow is Flow.link_and_map:
        return oauth.consent_page(request, connection, otp)
    return _link_page(request, connection, otp, lang, _get_credentials_form(request, connection, otp, lang))


@router.post(LINK + "/credentials")
async def get_credentials(request: Request, companyId: str, connectionId: str) -> HTMLResponse:
    state, fields = sandbox_state(request), await form_fields(request)
    otp, lang = first(fields, "otp"), language(first(fields, "lang"))
    connection = _connection_for(state, companyId, connectionId, otp)
    if connection is None:
        return _expired(lang)
    credentials = state.issue_credentials(connection)
    text, base = TEXT[lang], _base(request, connection)
    shown = render(
        "show_credentials.html",
        explain=text["credentials_explain"],
        username_label=text["username"],
        username=credentials.username,
        password_label=text["password"],
        password=credentials.password,
        qbo_href=f"{public_root(request)}/qbo/",
        open_quickbooks=text["open_quickbooks"],
        revoke_action=f"{base}/revoke",
        otp=otp,
        lang=lang,
        revoke_label=text["revoke_credentials"],
    )
    return _link_page(request, connection, otp, lang, shown)


@router.post(LINK + "/revoke")
async def revoke_credentials(request: Request, companyId: str, connectionId: str) -> HTMLResponse:
    state, fields = sandbox_state(request), await form_fields(request)
    otp, lang = first(fields, "otp"), language(first(fields, "lang"))
    connection = _connection_for(state, companyId, connectionId, otp)
    if connection is None:
        return _expired(lang)
    connection.credentials.clear()
    notice = message(TEXT[lang]["revoked"], kind="notice", element_id="revoked")
    return _link_page(
        request, connection, otp, lang, _get_credentials_form(request, connection, otp, lang, notice)
    )


def _with_live_otp(state: SandboxState, company_id: str, connection_id: str, otp: str) -> Connection | None:
    """The connection, if the OTP is its current one and has not lapsed."""
    connection = state.find_connection(company_id, connection_id)
    return connection if connection and state.otp_accepted(connection, otp) else None


def _connection_for(state: SandboxState, company_id: str, connection_id: str, otp: str) -> Connection | None:
    """A QuickBooks Online connection whose OTP is live: the only kind this page hands credentials to."""
    connection = _with_live_otp(state, company_id, connection_id, otp)
    return (
        connection
        if connection and profile(connection.platform_key).flow is Flow.platform_credentials
        else None
    )


def _base(request: Request, connection: Connection) -> str:
    return f"{public_root(request)}{link_path(connection)}"


def _get_credentials_form(
    request: Request, connection: Connection, otp: str, lang: str, notice: Safe = NOTHING
) -> Safe:
    return render(
        "get_credentials.html",
        notice=notice,
        action=f"{_base(request, connection)}/credentials",
        otp=otp,
        lang=lang,
        label=TEXT[lang]["get_credentials"],
    )


def _link_page(request: Request, connection: Connection, otp: str, lang: str, actions: Safe) -> HTMLResponse:
    state, text, other = sandbox_state(request), TEXT[lang], other_language(lang)
    company = state.companies[connection.company_id]
    body = render(
        "link_start.html",
        root=public_root(request),
        toggle_href=f"{_base(request, connection)}/start?otp={otp}&lang={other}",
        toggle_lang=other,
        toggle_label=TEXT[other]["toggle"],
        heading=text["heading"],
        intro=text["intro"].format(company=company.name),
        step_credentials=text["step_credentials"],
        step_quickbooks=text["step_quickbooks"],
        step_connect=text["step_connect"],
        callout=_callout(state.portal.callout, lang),
        credentials=actions,
    )
    return page(text["heading"], body, lang=lang)


def _callout(callout: Callout, lang: str) -> Safe:
    """The Portal's callout in the page's language (English when no French was entered); none if empty."""
    chosen = callout.fr if lang == "fr" and (callout.fr.title or callout.fr.body) else callout.en
    if not (chosen.title or chosen.body):
        return Safe("")
    return render("callout.html", title=chosen.title, body=chosen.body)


def _expired(lang: str) -> HTMLResponse:
    text = TEXT[lang]
    body = render(
        "link_expired.html",
        heading=text["expired_title"],
        explain=text["expired_explain"],
        next_step=text["expired_next_step"],
    )
    return page(text["expired_title"], body, lang=lang, status_code=401)
