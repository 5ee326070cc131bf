"""The two reads every user's app polls, answered before routing when sure of the route's answer.

`GET /v1/bank-feed` from the stored or cached view (app/bankfeed/cache.py, the same look-up the route
makes), and `GET /v1/bank-feed/link` while the stored link has more than the safety margin left (on
Postgres: one indexed query over raw asyncpg, or none while the view cache's listener vouches for the link
this process read last; a new link is a write to `feed_connection`, which notifies). Through FastAPI each
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

import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param  # as the route's HTTPBearer reads it
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Receive, Scope, Send

from app.auth.principals import EndUser
from app.auth.tokens import TokenVerifier
from app.bankfeed.cache import ViewCache
from app.bankfeed.models import FeedConnection
from app.bankfeed.platforms import PLATFORMS
from app.http import NO_STORE, rendered_response
from app.onboarding import router as routes
from app.onboarding.flows import Operation, strategy
from app.onboarding.schemas import LinkOut
from app.rawpool import RawPool

# What OnboardingService.link serves without calling Codat: the current connection's link, with more than
# the safety margin ($2 = now + margin) left, of a business whose Codat company is known, on a platform whose
# flow has links ($3; Sage's connection has a link Codat says must not be sent: the route refuses it).
VALID_LINK_SQL = """
SELECT c.link_url, c.link_expires_at, c.codat_connection_id, c.status
FROM feed_connection AS c JOIN business AS b ON b.id = c.business_id
WHERE c.business_id = $1 AND c.is_current AND c.codat_connection_id IS NOT NULL
  AND b.codat_company_id IS NOT NULL AND c.link_url IS NOT NULL AND c.link_expires_at > $2
  AND c.platform = ANY($3)
"""
LINK_PLATFORMS = [p.key for p in PLATFORMS if Operation.LINK in strategy(p).operations]

Answer = Callable[[FastAPI, EndUser, dict[bytes, bytes]], Awaitable[Response | None]]


async def _view(app: FastAPI, user: EndUser, headers: dict[bytes, bytes]) -> Response | None:
    rendered = await ViewCache.of(app.state.sessionmaker.kw["bind"]).served(user.business_id)
    if rendered is None:
        return None
    return rendered_response(rendered, headers.get(b"if-none-match", b"").decode("latin-1"))


class LinkCache:
    """Valid links by business, trusted exactly as the view cache trusts its views (same listener)."""

    _by_engine: "weakref.WeakKeyDictionary[Engine, LinkCache]" = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, engine: AsyncEngine) -> "LinkCache":
        links = cls._by_engine.get(engine.sync_engine)
        if links is None:
            links = cls._by_engine[engine.sync_engine] = cls(engine)
        return links

    def __init__(self, engine: AsyncEngine) -> None:
        self._views = ViewCache.of(engine)
        self._pool = RawPool.of(engine)
        self._entries: OrderedDict[str, tuple[bytes, datetime, int]] = OrderedDict()
        self._views.subscribe(self._changed)
        # The column's own conversion of what Postgres holds (raw SQL skips the ORM's): whatever the model
        # declares the stored link to be (plain text, or text encrypted at rest), it is read the same way.
        column_type = FeedConnection.__table__.c.link_url.type
        self._link_url: Callable[[Any], Any] = column_type.result_processor(engine.dialect, None) or str

    def _changed(self, business_id: str) -> None:
        self._entries.pop(business_id, None)

    async def valid(self, business_id: str, fresh_after: datetime) -> bytes | None:
        """The link's JSON while it lasts past `fresh_after`; None when the route must make one."""
        entry = self._entries.get(business_id)
        if entry is not None and entry[2] == self._views.trusted_epoch() and entry[1] > fresh_after:
            return entry[0]
        watermark = self._views.watermark()
        row = await self._pool.fetchrow(VALID_LINK_SQL, business_id, fresh_after, LINK_PLATFORMS)
        if row is None:
            return None
        body = (
            LinkOut(
                link_url=self._link_url(row["link_url"]),
                expires_at=row["link_expires_at"],
                connection_id=row["codat_connection_id"],
                connection_status=row["status"],
            )
            .model_dump_json(by_alias=True)
            .encode()
        )
        if watermark[0] is not None and watermark == self._views.watermark():
            self._entries[business_id] = (body, row["link_expires_at"], watermark[0])
            self._entries.move_to_end(business_id)
            if len(self._entries) > self._views.max_entries:
                self._entries.popitem(last=False)
        return body


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
