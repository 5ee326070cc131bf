"""The console page for support staff, at /console: server-rendered HTML and plain forms.

Server-rendered rather than another TypeScript app: a handful of tables and buttons, no build step, nothing
to keep in sync with the API's types, and it works with scripts off. Its own sign-in: the operator pastes a
token from the identity provider with `console:read` (and `console:write` to act); it is kept in an
HttpOnly, SameSite=Strict cookie scoped to /console, and every action is a POST that must come from this
origin. Each value shown is escaped (`e`).
"""

import html
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from string import Template
from typing import Annotated
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.principals import Service
from app.console import queries
from app.console.actions import ConsoleActions
from app.console.schemas import BusinessPage, FeedPage, Health, OutboundRow
from app.errors import AppError
from app.events.schemas import SubscriptionOut

TEMPLATES = Path(__file__).resolve().parent / "templates"
COOKIE = "bff_console"
HEALTH: list[tuple[Health, str]] = [
    ("needs_action", "Needs action"),
    ("broken", "Broken"),
    ("stalled", "Stalled"),
    ("held", "Held transactions"),
    ("failed", "Failed transactions"),
    ("dead_webhooks", "Dead webhooks"),
    ("all", "All"),
]
PageId = Annotated[str, PathParam(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]

router = APIRouter(prefix="/console", include_in_schema=False)


def e(value: object) -> str:
    return html.escape("" if value is None else str(value))


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def fill(name: str, **html_values: str) -> str:
    """A template with its placeholders replaced by HTML the caller made (and escaped) itself."""
    return _template(name).substitute(html_values)


def row(*cells: str, **attributes: str) -> str:
    """A table row of HTML cells (escape values with `e` first)."""
    attrs = "".join(f' {name}="{e(value)}"' for name, value in attributes.items())
    return f"<tr{attrs}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def page(title: str, body: str, operator: Service | None = None, status_code: int = 200) -> HTMLResponse:
    who = (
        '<form method="post" action="/console/logout" class="who">Signed in as '
        f'<b id="operator">{e(operator.name)}</b> <button>Sign out</button></form>'
        if operator
        else ""
    )
    document = fill("layout.html", title=e(title), who=who, body=body)
    return HTMLResponse(document, status_code=status_code, headers={"Cache-Control": "no-store"})


def operator_of(request: Request, scope: str = "console:read") -> Service | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        service = request.app.state.token_verifier.service(token)
    except AppError:
        return None
    return service if scope in service.scopes else None


def to_login() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303)


async def form_of(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}


@router.get("/login")
async def login_page(request: Request, error: str | None = None) -> HTMLResponse:
    said = f'<p class="error">{e(error)}</p>' if error else ""
    return page("Sign in", fill("login.html", said=said))


@router.post("/login")
async def login(request: Request) -> Response:
    token = (await form_of(request)).get("token", "").strip()
    try:
        service = request.app.state.token_verifier.service(token)
    except AppError as exc:
        return await login_page(request, f"That token was refused: {exc.detail}")
    if "console:read" not in service.scopes:
        return await login_page(request, "That token lacks the console:read scope.")
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", path="/console", secure=request.url.scheme == "https"
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = to_login()
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("")
async def feeds_page(
    request: Request, health: Health = "needs_action", q: str | None = None, after: str | None = None
) -> Response:
    operator = operator_of(request)
    if operator is None:
        return to_login()
    async with request.app.state.sessionmaker() as session:
        found = await queries.list_feeds(session, health, (q or "")[:100] or None, after, 50)
    return page("Bank feeds by health", _feeds_body(found, health, q), operator)


def _feeds_body(found: FeedPage, health: Health, q: str | None) -> str:
    def link(label: str, **params: str) -> str:
        on = ' class="on"' if params.get("health") == health and "after" not in params else ""
        return f'<a href="/console?{e(urlencode({"q": q or "", **params}))}"{on}>{e(label)}</a>'

    tabs = " ".join(link(label, health=key) for key, label in HEALTH)
    search = (
        f'<form method="get" action="/console"><input type="hidden" name="health" value="{e(health)}">'
        f'<input name="q" value="{e(q)}" placeholder="business id or name" aria-label="Search businesses">'
        "<button>Search</button></form>"
    )
    rows = "".join(
        row(
            f'<a href="/console/businesses/{quote(f.business_id)}">{e(f.business_id)}</a>',
            e(f.business_name),
            e(f.action),
            e(f.connection_status),
            " ".join(word for word, on in (("broken", f.broken), ("stalled", f.stalled)) if on),
            str(f.held_count),
            str(f.failed_count),
            id=f"feed-{f.business_id}",
        )
        for f in found.feeds
    )
    heads = "".join(
        f"<th>{h}</th>"
        for h in ("Business", "Name", "Action", "Connection", "State", "Unfinished txns", "Failed txns")
    )
    table = f"<table><tr>{heads}</tr>{rows}</table>" if found.feeds else "<p>None.</p>"
    more = link("Next page", health=health, after=found.next_cursor) if found.next_cursor else ""
    return f"<nav>{tabs}</nav>{search}{table}{more}"


@router.get("/businesses/{business_id}")
async def business_page(
    request: Request, business_id: PageId, said: str | None = None, before: int | None = None
) -> Response:
    operator = operator_of(request)
    if operator is None:
        return to_login()
    try:
        async with request.app.state.sessionmaker() as session:
            found = await queries.business_page(session, business_id, before)
    except AppError as exc:
        return page("Not found", f'<p class="error">{e(exc.detail)}</p>', operator, exc.status_code)
    return page(f"{found.feed.business_name} ({business_id})", _business_body(found, said), operator)


def _button(action: str, label: str, hidden: dict[str, str] | None = None) -> str:
    fields = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in (hidden or {}).items())
    return (
        f'<form method="post" action="{e(action)}" class="inline">{fields}<button>{e(label)}</button></form>'
    )


def _business_body(found: BusinessPage, said: str | None) -> str:
    feed, base = found.feed, f"/console/businesses/{quote(found.feed.business_id)}"
    retryable = any(t.retryable for t in found.transactions)
    return fill(
        "business.html",
        said=f'<p class="said" id="said">{e(said)}</p>' if said else "",
        action=e(feed.action),
        connection_status=e(feed.connection.status if feed.connection else "none"),
        confirmed=e(feed.state_confirmed_at or "never"),
        refresh=_button(f"{base}/refresh", "Refresh from Codat"),
        accounts="".join(
            row(
                e(a.account_id),
                e(a.account_name),
                f'<span class="status">{e(a.status)}</span>',
                id=f"account-{a.account_id}",
            )
            for a in feed.accounts
        ),
        counts=", ".join(f"{e(k)}: {v}" for k, v in found.transaction_counts.items()),
        retry=_button(f"{base}/transactions/retry", "Retry transactions Codat refused") if retryable else "",
        transactions="".join(
            row(e(t.account_id), e(t.transaction_id), e(t.status), e(t.error), "yes" if t.retryable else "")
            for t in found.transactions
        ),
        dead=_dead_table(found, base),
        events="".join(_event_row(found, base, o) for o in found.events),
        subscriptions="".join(_subscription_row(feed.business_id, s) for s in found.subscriptions),
        timeline="".join(
            f'<tr class="entry"><td>{e(t.at.isoformat(timespec="seconds"))}</td>'
            f'<td class="actor">{e(t.actor)}</td><td class="action">{e(t.action)}</td>'
            f"<td>{e(t.outcome)}</td><td>{e(t.detail)}</td></tr>"
            for t in found.timeline
        ),
        older=(
            f'<a id="older" href="{base}?before={found.timeline[-1].id}#timeline">Older entries</a>'
            if len(found.timeline) == queries.RECENT
            else ""
        ),
    )


def _dead_table(found: BusinessPage, base: str) -> str:
    if not found.dead_webhooks:
        return "<p>None.</p>"
    rows = "".join(
        row(
            e(w.id),
            e(w.event_type),
            e(w.received_at),
            str(w.attempts),
            e(w.error),
            _button(f"{base}/webhooks/{quote(w.id)}/reapply", "Re-apply"),
            id=f"dead-{w.id}",
        )
        for w in found.dead_webhooks
    )
    heads = "<tr><th>Id</th><th>Type</th><th>Received</th><th>Tries</th><th>Error</th><th></th></tr>"
    return f"<table>{heads}{rows}</table>"


def _event_row(found: BusinessPage, base: str, sent: OutboundRow) -> str:
    options = "".join(
        f'<option value="{e(s.id)}">{e(s.id)} → {e(s.url)}</option>' for s in found.subscriptions
    )
    resend = (
        f'<form method="post" action="{base}/events/{quote(sent.event_id)}/resend" class="inline">'
        f'<select name="subscription" aria-label="Subscription">{options}</select>'
        "<button>Resend</button></form>"
    )
    cells = (
        sent.event_id,
        sent.event_type,
        sent.subscription_id,
        sent.status,
        sent.attempts,
        sent.last_error,
    )
    return row(*(e(c) for c in cells), resend)


def _subscription_row(business_id: str, subscription: SubscriptionOut) -> str:
    state = "enabled" if subscription.enabled else f"disabled: {subscription.disabled_reason}"
    verb = "disable" if subscription.enabled else "enable"
    button = _button(
        f"/console/subscriptions/{quote(subscription.id)}/{verb}",
        verb.capitalize(),
        {"business": business_id},
    )
    return row(e(subscription.id), e(subscription.url), e(state), button)


def _same_origin(request: Request) -> bool:
    """Browsers say where a request comes from in Sec-Fetch-Site; older ones in Origin, which is "null" under
    a no-referrer policy. The SameSite=Strict cookie already keeps other sites' forms from acting."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin in (None, "null", f"{request.url.scheme}://{request.url.netloc}")


Act = Callable[[ConsoleActions, dict[str, str]], Awaitable[object]]


async def act(request: Request, business_id: str | None, run: Act) -> Response:
    """Run an action as the signed-in operator (with `console:write`) and go back to the business's page."""
    if not _same_origin(request):
        return page("Refused", '<p class="error">An action must come from this console.</p>', status_code=403)
    operator = operator_of(request, "console:write")
    if operator is None:
        if operator_of(request) is None:
            return to_login()
        return page("Refused", '<p class="error">Your token lacks console:write.</p>', status_code=403)
    form = await form_of(request)
    business_id = business_id or form.get("business", "")
    try:
        done = await run(ConsoleActions(request.app, operator.name), form)
        said = getattr(done, "detail", "done")
    except AppError as exc:
        said = f"Not done: {exc.detail}"
    return RedirectResponse(
        f"/console/businesses/{quote(business_id)}?{urlencode({'said': said})}", status_code=303
    )


@router.post("/businesses/{business_id}/refresh")
async def refresh(request: Request, business_id: PageId) -> Response:
    return await act(request, business_id, lambda actions, _: actions.refresh(business_id))


@router.post("/businesses/{business_id}/webhooks/{webhook_id}/reapply")
async def reapply(request: Request, business_id: PageId, webhook_id: PageId) -> Response:
    return await act(
        request, business_id, lambda actions, _: actions.reapply_webhook(business_id, webhook_id)
    )


@router.post("/businesses/{business_id}/transactions/retry")
async def retry(request: Request, business_id: PageId) -> Response:
    return await act(request, business_id, lambda actions, _: actions.retry_transactions(business_id))


@router.post("/businesses/{business_id}/events/{event_id}/resend")
async def resend(request: Request, business_id: PageId, event_id: PageId) -> Response:
    return await act(
        request,
        business_id,
        lambda actions, form: actions.resend_event(business_id, event_id, form.get("subscription", "")),
    )


@router.post("/subscriptions/{subscription_id}/{state}")
async def subscription(request: Request, subscription_id: PageId, state: str) -> Response:
    enable = state == "enable"
    return await act(request, None, lambda actions, _: actions.set_subscription(subscription_id, enable))
