"""The console page for support staff, at /console: server-rendered HTML and plain forms.

Server-rendered rather than another TypeScript app: a handful of tables and buttons, no build step, nothing
to keep in sync with the API's types, and it works with scripts off. Its own sign-in: the operator pastes a
token from the identity provider with `console:read` (and `console:write` to act); it is kept in an
HttpOnly, SameSite=Strict cookie scoped to /console, and every action is a POST that must come from this
origin. Each value shown is escaped (`e`).
"""

import html
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.principals import Service
from app.console import queries
from app.console.actions import ConsoleActions
from app.console.schemas import BusinessPage, FeedPage, Health
from app.errors import AppError

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
PageId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]

router = APIRouter(prefix="/console", include_in_schema=False)


def e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def page(title: str, body: str, operator: Service | None = None, status_code: int = 200) -> HTMLResponse:
    who = (
        f'<form method="post" action="/console/logout" class="who">Signed in as <b id="operator">'
        f"{e(operator.name)}</b> <button>Sign out</button></form>"
        if operator
        else ""
    )
    document = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)} · console</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body><header><a href="/console">bankfeeds console</a>{who}</header><main><h1>{e(title)}</h1>{body}</main></body></html>"""
    return HTMLResponse(document, status_code=status_code, headers={"Cache-Control": "no-store"})


STYLE = """body{font:14px system-ui,sans-serif;margin:0;color:#222}header{background:#1f3a5f;color:#fff;padding:8px 16px;
display:flex;justify-content:space-between}header a{color:#fff;font-weight:bold;text-decoration:none}main{padding:16px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
nav a{margin-right:12px}nav a.on{font-weight:bold}.said{background:#eef6e8;padding:8px}.error{background:#fde8e8;padding:8px}
form.inline{display:inline}.who{display:inline;margin:0}"""


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
    body = f"""{said}<form method="post" action="/console/login"><p><label for="token">Console token
(from your identity provider, scope <code>console:read</code>, <code>console:write</code> to act)</label></p>
<textarea id="token" name="token" rows="4" cols="80" autocomplete="off"></textarea><p><button>Sign in</button></p></form>"""
    return page("Sign in", body)


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
    tabs = " ".join(
        f'<a href="/console?{urlencode({"health": key, "q": q or ""})}" class="{"on" if key == health else ""}">'
        f"{e(label)}</a>"
        for key, label in HEALTH
    )
    search = f"""<form method="get" action="/console"><input type="hidden" name="health" value="{e(health)}">
<input name="q" value="{e(q)}" placeholder="business id or name" aria-label="Search businesses">
<button>Search</button></form>"""
    rows = "".join(
        f'<tr id="feed-{e(f.business_id)}"><td><a href="/console/businesses/{quote(f.business_id)}">'
        f"{e(f.business_id)}</a></td><td>{e(f.business_name)}</td><td>{e(f.action)}</td>"
        f"<td>{e(f.connection_status)}</td><td>{'broken' if f.broken else ''}{' stalled' if f.stalled else ''}</td>"
        f"<td>{f.held_count}</td><td>{f.failed_count}</td></tr>"
        for f in found.feeds
    )
    more = (
        f'<a id="next" href="/console?{urlencode({"health": health, "q": q or "", "after": found.next_cursor})}">Next page</a>'
        if found.next_cursor
        else ""
    )
    table = (
        "<table><tr><th>Business</th><th>Name</th><th>Action</th><th>Connection</th><th>State</th>"
        f"<th>Unfinished transactions</th><th>Failed transactions</th></tr>{rows}</table>"
        if found.feeds
        else "<p>None.</p>"
    )
    return f"<nav>{tabs}</nav>{search}{table}{more}"


@router.get("/businesses/{business_id}")
async def business_page(request: Request, business_id: PageId, said: str | None = None) -> Response:
    operator = operator_of(request)
    if operator is None:
        return to_login()
    try:
        async with request.app.state.sessionmaker() as session:
            found = await queries.business_page(session, business_id)
    except AppError as exc:
        return page("Not found", f'<p class="error">{e(exc.detail)}</p>', operator, exc.status_code)
    notice = f'<p class="said" id="said">{e(said)}</p>' if said else ""
    return page(f"{found.feed.business_name} ({business_id})", notice + _business_body(found), operator)


def _button(action: str, label: str, hidden: dict[str, str] | None = None) -> str:
    fields = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in (hidden or {}).items())
    return (
        f'<form method="post" action="{e(action)}" class="inline">{fields}<button>{e(label)}</button></form>'
    )


def _business_body(found: BusinessPage) -> str:
    feed, base = found.feed, f"/console/businesses/{quote(found.feed.business_id)}"
    connection = feed.connection
    accounts = "".join(
        f'<tr id="account-{e(a.account_id)}"><td>{e(a.account_id)}</td><td>{e(a.account_name)}</td>'
        f'<td class="status">{e(a.status)}</td></tr>'
        for a in feed.accounts
    )
    counts = ", ".join(f"{e(k)}: {v}" for k, v in found.transaction_counts.items())
    transactions = "".join(
        f"<tr><td>{e(t.account_id)}</td><td>{e(t.transaction_id)}</td><td>{e(t.status)}</td><td>{e(t.error)}</td>"
        f"<td>{'yes' if t.retryable else ''}</td></tr>"
        for t in found.transactions
    )
    retry = (
        _button(f"{base}/transactions/retry", "Retry transactions Codat refused")
        if any(t.retryable for t in found.transactions)
        else ""
    )
    dead = "".join(
        f'<tr id="dead-{e(w.id)}"><td>{e(w.id)}</td><td>{e(w.event_type)}</td><td>{e(w.received_at)}</td>'
        f"<td>{w.attempts}</td><td>{e(w.error)}</td><td>{_button(f'{base}/webhooks/{quote(w.id)}/reapply', 'Re-apply')}</td></tr>"
        for w in found.dead_webhooks
    )
    options = "".join(
        f'<option value="{e(s.id)}">{e(s.id)} → {e(s.url)}</option>' for s in found.subscriptions
    )
    events = "".join(
        f"<tr><td>{e(o.event_id)}</td><td>{e(o.event_type)}</td><td>{e(o.subscription_id)}</td><td>{e(o.status)}</td>"
        f"<td>{o.attempts}</td><td>{e(o.last_error)}</td><td>"
        f'<form method="post" action="{base}/events/{quote(o.event_id)}/resend" class="inline">'
        f'<select name="subscription" aria-label="Subscription">{options}</select><button>Resend</button></form></td></tr>'
        for o in found.events
    )
    subscriptions = "".join(
        f"<tr><td>{e(s.id)}</td><td>{e(s.url)}</td><td>{'enabled' if s.enabled else 'disabled: ' + e(s.disabled_reason)}</td>"
        f"<td>{_button(f'/console/subscriptions/{quote(s.id)}/' + ('disable' if s.enabled else 'enable'), 'Disable' if s.enabled else 'Enable', {'business': feed.business_id})}</td></tr>"
        for s in found.subscriptions
    )
    timeline = "".join(
        f'<tr class="entry"><td>{e(t.at.isoformat(timespec="seconds"))}</td><td class="actor">{e(t.actor)}</td>'
        f'<td class="action">{e(t.action)}</td><td>{e(t.outcome)}</td><td>{e(t.detail)}</td></tr>'
        for t in found.timeline
    )
    return f"""<section id="feed"><h2>Feed</h2><p>Action: <b id="action">{e(feed.action)}</b> · connection
<b id="connection-status">{e(connection.status if connection else "none")}</b> · confirmed by Codat {e(feed.state_confirmed_at)}
{_button(f"{base}/refresh", "Refresh from Codat")}</p>
<table><tr><th>Account</th><th>Name</th><th>Status</th></tr>{accounts}</table></section>
<section id="transactions"><h2>Transactions</h2><p>{counts} {retry}</p>
<table><tr><th>Account</th><th>Id</th><th>Status</th><th>Error</th><th>Retryable</th></tr>{transactions}</table></section>
<section id="dead-webhooks"><h2>Dead webhooks</h2>{"<table><tr><th>Id</th><th>Type</th><th>Received</th><th>Tries</th><th>Error</th><th></th></tr>" + dead + "</table>" if dead else "<p>None.</p>"}</section>
<section id="events"><h2>Outbound events</h2><table><tr><th>Event</th><th>Type</th><th>Subscription</th><th>Status</th>
<th>Tries</th><th>Last error</th><th></th></tr>{events}</table>
<h3>Subscriptions</h3><table>{subscriptions}</table></section>
<section id="timeline"><h2>Timeline</h2><table><tr><th>When</th><th>Who</th><th>What</th><th>Outcome</th><th>Detail</th></tr>{timeline}</table></section>"""


Act = Callable[[ConsoleActions, dict[str, str]], Awaitable[object]]


async def act(request: Request, business_id: str | None, run: Act) -> Response:
    """Run an action as the signed-in operator (with `console:write`) and go back to the business's page."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
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
