"""The two reads every user's app polls, answered before routing when sure of the route's answer.

`GET /v1/bank-feed` from the stored or cached view (app/bankfeed/cache.py, the same look-up the route
makes), and `GET /v1/bank-feed/link` while the stored link has more than the safety margin left (on
Postgres, from the link cache: app/onboarding/link_cache.py). Through FastAPI each
costs several times what the answer does: routing, the dependency tree (bearer, user, a database session)
and their exit stacks.

The request context middleware asks here first, so every answer gets the same correlation id, metrics and
headers as the route's. This answers only a request whose bearer token verifies without waiting on the
network (remembered, or HS256); it sends the very response the route would and names the route for the
metrics. At the first doubt it answers nothing and the route takes the request: a token refused or needing
the identity provider's keys, no business, a view to render, a link to refresh (the route's single flight
makes that one upstream read), a database error, an `Origin` header when CORS is on (CORSMiddleware
decorates the route's answer).
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import cache

from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param  # as the route's HTTPBearer reads it
from starlette.types import Receive, Scope, Send

from app.auth.principals import EndUser
from app.auth.tokens import TokenVerifier
from app.bankfeed.cache import ViewCache
from app.http import NO_STORE, rendered_response
from app.onboarding import router as routes
from app.onboarding.link_cache import LinkCache

Answer = Callable[[FastAPI, EndUser, dict[bytes, bytes]], Awaitable[Response | None]]


async def _view(app: FastAPI, user: EndUser, headers: dict[bytes, bytes]) -> Response | None:
    rendered = await ViewCache.of(app.state.sessionmaker.kw["bind"]).served(user.business_id)
    if rendered is None:
        return None
    return rendered_response(rendered, headers.get(b"if-none-match", b"").decode("latin-1"))


async def _link(app: FastAPI, user: EndUser, _headers: dict[bytes, bytes]) -> Response | None:
    engine = app.state.sessionmaker.kw["bind"]
    if engine.dialect.name != "postgresql":
        return None
    margin = timedelta(seconds=app.state.settings.codat.link_safety_margin_seconds)
    body = await LinkCache.of(engine).valid(user.business_id, app.state.clock.now() + margin)
    if body is None:
        return None
    return Response(body, media_type="application/json", headers=NO_STORE)


ANSWERS: dict[str, Answer] = {"/v1/bank-feed": _view, "/v1/bank-feed/link": _link}


async def answer_from_cache(scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer one of the polled reads if certain to be right; False when it did not."""
    root = scope.get("root_path", "")
    path = scope["path"][len(root) :] if scope["path"].startswith(root) else ""
    answer = ANSWERS.get(path) if scope["method"] == "GET" else None
    if answer is None:
        return False
    app: FastAPI = scope["app"]
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name, value)  # the first of each, as Request.headers.get() takes it
    if b"origin" in headers and app.state.settings.cors_origins:
        return False
    scheme, token = get_authorization_scheme_param(headers.get(b"authorization", b"").decode("latin-1"))
    verifier: TokenVerifier = app.state.token_verifier
    if scheme.lower() != "bearer" or verifier.may_block(token):
        return False
    try:
        user = verifier.end_user(token)
        response = await answer(app, user, headers)
    except Exception:  # noqa: BLE001 - the route meets the same failure and answers it in our error shape
        return False
    if response is None:
        return False
    scope["route"] = _route(path)
    scope.setdefault("state", {})["business_id"] = user.business_id  # for the access log line
    await response(scope, receive, send)
    return True


@cache
def _route(path: str) -> APIRoute:
    """The route this stands in for, as routing puts it in the scope (for the metrics and telemetry)."""
    return next(
        r
        for r in routes.router.routes
        if isinstance(r, APIRoute) and r.path == path and "GET" in (r.methods or ())
    )
