"""Each process's live links by business: what `GET /v1/bank-feed/link` serves without the ORM or Codat.

Trusted exactly as the view cache trusts its views (app/bankfeed/cache.py: the same listener, epochs and
watermarks); a new link is a write to `feed_connection`, which notifies. When the listener starts, every
live link is taken in as stored, encrypted, and decrypted only when its business asks for it: a replica holds
in clear only the links it has served, and a business it never served costs a decryption, not a query.
"""

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.bankfeed.cache import ViewCache, Watermark, remember
from app.bankfeed.models import FeedConnection
from app.bankfeed.platforms import PLATFORMS
from app.db import PerEngine
from app.onboarding.flows import Operation, strategy
from app.onboarding.schemas import LinkOut
from app.rawpool import RawPool

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


@dataclass(slots=True)
class _Link:
    expires_at: datetime
    trusted_in: int  # the view cache's listener epoch it was read in
    row: asyncpg.Record | None  # as read, the link still encrypted: made into `body` when first asked for
    body: bytes | None = None


class LinkCache:
    """Live links by business, one cache per engine (per process)."""

    _by_engine: "PerEngine[LinkCache]" = PerEngine()

    @classmethod
    def of(cls, engine: AsyncEngine) -> "LinkCache":
        return cls._by_engine.of(engine, lambda: cls(engine))

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
        trusted = entry is not None and entry.trusted_in == self._views.trusted_epoch()
        # A lapsing link is read again: the one this process is minting may be stored by the time it is, and
        # then no more requests wait on the route (whose limit on Codat calls a burst of them would exhaust).
        if entry is not None and trusted and entry.expires_at > fresh_after:
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
        epoch, limit = watermark[0], self._views.max_entries
        assert epoch is not None  # warm-ups run only while listening
        for row in await self._views.current_rows(
            watermark, LIVE_LINKS_SQL, datetime.now(UTC), LINK_PLATFORMS, limit
        ):
            if row["business_id"] not in self._entries:
                self._put(row["business_id"], _Link(row["link_expires_at"], epoch, row))

    def _put(self, business_id: str, link: _Link) -> None:
        remember(self._entries, business_id, link, self._views.max_entries)

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
