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

import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import asyncpg
from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param  # as the route's HTTPBearer reads it
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Receive, Scope, Send

from app.auth.principals import EndUser
from app.auth.tokens import TokenVerifier
from app.bankfeed.cache import ViewCache, Watermark
from app.bankfeed.models import FeedConnection
from app.bankfeed.platforms import PLATFORMS
from app.http import NO_STORE, rendered_response
from app.onboarding import router as routes
from app.onboarding.flows import Operation, strategy
from app.onboarding.schemas import LinkOut
from app.rawpool import RawPool

log = logging.getLogger(__name__)

# What OnboardingService.link serves without calling Codat: the current connection's link, with more than
# the safety margin ($1 = now + margin) left, of a business whose Codat company is known, on a platform whose
# flow has links ($2; Sage's connection has a link Codat says must not be sent: the route refuses it).
LINK_COLUMNS = "c.business_id, c.link_url, c.link_expires_at, c.codat_connection_id, c.status"
LIVE_LINKS = """
FROM feed_connection AS c JOIN business AS b ON b.id = c.business_id
WHERE c.is_current AND c.codat_connection_id IS NOT NULL AND b.codat_company_id IS NOT NULL
  AND c.link_url IS NOT NULL AND c.link_expires_at > $1 AND c.platform = ANY($2)
"""
VALID_LINK_SQL = f"SELECT {LINK_COLUMNS} {LIVE_LINKS} AND c.business_id = $3"
# Every live link (still sealed), for a process that has just started listening: up to $3 of them.
LIVE_LINKS_SQL = f"SELECT {LINK_COLUMNS} {LIVE_LINKS} LIMIT $3"
LINK_PLATFORMS = [p.key for p in PLATFORMS if Operation.LINK in strategy(p).operations]

Answer = Callable[[FastAPI, EndUser, dict[bytes, bytes]], Awaitable[Response | None]]


async def _view(app: FastAPI, user: EndUser, headers: dict[bytes, bytes]) -> Response | None:
    rendered = await ViewCache.of(app.state.sessionmaker.kw["bind"]).served(user.business_id)
    if rendered is None:
        return None
    return rendered_response(rendered, headers.get(b"if-none-match", b"").decode("latin-1"))


@dataclass(slots=True)
class _Link:
    expires_at: datetime
    trusted_in: int  # the view cache's listener epoch it was read in
    row: asyncpg.Record | None  # as read, the link still encrypted: made into `body` when first asked for
    body: bytes | None = None


class LinkCache:
    """Live links by business, trusted exactly as the view cache trusts its views (same listener).

    When the listener starts, every live link is taken in as stored: encrypted. A link is decrypted only when
    its business asks for it, so a replica holds in clear only the links it has served, and a business it has
    never served costs a decryption (about 10 µs), not a query."""

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
        self._entries: OrderedDict[str, _Link] = OrderedDict()
        self._views.subscribe(self._changed, self._warm)
        # The column's own conversion of what Postgres holds (raw SQL skips the ORM's): whatever the model
        # declares the stored link to be (plain text, or text encrypted at rest), it is read the same way.
        column_type = FeedConnection.__table__.c.link_url.type
        self._link_url: Callable[[Any], Any] = column_type.result_processor(engine.dialect, None) or str

    def _changed(self, business_id: str) -> None:
        self._entries.pop(business_id, None)

    async def valid(self, business_id: str, fresh_after: datetime) -> bytes | None:
        """The link's JSON while it lasts past `fresh_after`; None when the route must make one."""
        entry = self._entries.get(business_id)
        if entry is not None and entry.trusted_in == self._views.trusted_epoch():
            if entry.expires_at <= fresh_after:
                return None  # the route makes a new one (one upstream read however many ask)
            if entry.body is None:
                entry.body, entry.row = self._answer(entry.row), None
            self._entries.move_to_end(business_id)
            return entry.body
        watermark = self._views.watermark()
        row = await self._pool.fetchrow(VALID_LINK_SQL, fresh_after, LINK_PLATFORMS, business_id)
        if row is None:
            return None
        body = self._answer(row)
        if watermark[0] is not None and watermark == self._views.watermark():
            self._put(business_id, _Link(row["link_expires_at"], watermark[0], None, body))
        return body

    async def _warm(self, watermark: Watermark) -> None:
        """Every live link, still encrypted, as of the listener's start (see ViewCache.subscribe)."""
        try:
            now, limit = datetime.now(UTC), self._views.max_entries
            rows = await self._pool.fetch(LIVE_LINKS_SQL, now, LINK_PLATFORMS, limit)
        except Exception as exc:  # noqa: BLE001 - only a head start: reads fetch what they need meanwhile
            log.warning("link_cache.warm_failed", extra={"error": type(exc).__name__})
            return
        if watermark != self._views.watermark() or watermark[0] is None:
            return  # a change came meanwhile and it could be any of them: reads fetch their own
        for row in rows:
            if row["business_id"] not in self._entries:
                self._put(row["business_id"], _Link(row["link_expires_at"], watermark[0], row))

    def _put(self, business_id: str, link: _Link) -> None:
        self._entries[business_id] = link
        self._entries.move_to_end(business_id)
        if len(self._entries) > self._views.max_entries:
            self._entries.popitem(last=False)

    def _answer(self, row: asyncpg.Record | None) -> bytes:
        assert row is not None  # an entry keeps its row until its body is made
        return (
            LinkOut(
                link_url=self._link_url(row["link_url"]),
                expires_at=row["link_expires_at"],
                connection_id=row["codat_connection_id"],
                connection_status=row["status"],
            )
            .model_dump_json(by_alias=True)
            .encode()
        )


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
