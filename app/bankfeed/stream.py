"""Server-sent events: tell the SPA when its bank feed changed, so it re-reads the view instead of polling."""

import json
from collections.abc import AsyncIterator

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.changes import ChangeFeed
from app.bankfeed.exceptions import BusinessNotFound
from app.bankfeed.repository import BankFeedRepository

RECHECK_SECONDS = 2.0  # how soon a change made by another replica is seen
KEEPALIVE_EVERY = 7  # rechecks between keep-alive comments (~15 s), so proxies keep the stream open
RECONNECT_MS = 1000  # when the server shuts down: EventSource reconnects after this (to another replica)


async def feed_version(sessions: async_sessionmaker[AsyncSession], business_id: str) -> int:
    async with sessions() as session:
        version = await BankFeedRepository(session).feed_version(business_id)
    if version is None:
        raise BusinessNotFound()
    return version


def sse(event: str, data: dict[str, object], retry_ms: int | None = None) -> str:
    retry = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"event: {event}\n{retry}data: {json.dumps(data)}\n\n"


async def bank_feed_events(
    request: Request,
    sessions: async_sessionmaker[AsyncSession],
    changes: ChangeFeed,
    business_id: str,
    version: int,
) -> AsyncIterator[str]:
    yield sse("ready", {"version": version})
    quiet = 0
    while not await request.is_disconnected():
        await changes.wait(business_id, RECHECK_SECONDS)
        if changes.closed:
            yield sse("reconnect", {"reason": "server shutting down"}, retry_ms=RECONNECT_MS)
            return
        latest = await feed_version(sessions, business_id)
        if latest != version:
            version, quiet = latest, 0
            yield sse("bank-feed-changed", {"version": version})
        elif (quiet := quiet + 1) >= KEEPALIVE_EVERY:
            quiet = 0
            yield ": keep-alive\n\n"
