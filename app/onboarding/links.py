"""The connection's Link URL: served while it has more than the safety margin left, else read afresh from
Codat by one refresher at a time across processes (a short lease instead of a lock held across the call).

Only that read counts against the business's limit on Codat calls: serving a stored link calls nobody, and
the requests that wait for another's refresh share its one call (a burst of them used to be refused 429).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.models import FeedConnection
from app.bankfeed.repository import BankFeedRepository
from app.bankfeed.sync import FeedSync
from app.clock import Clock, as_utc
from app.config import CodatSettings
from app.metrics import LINK_REFRESHES
from app.onboarding.flows import Link
from app.onboarding.singleflight import SingleFlight

log = logging.getLogger(__name__)

LINK_LEASE_SECONDS = 30
LINK_POLL_SECONDS = 0.05


class Links:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        sync: FeedSync,
        settings: CodatSettings,
        clock: Clock,
        single_flight: SingleFlight,
        count_codat_call: Callable[[str], Awaitable[None]],
    ) -> None:
        self.sessions = sessions
        self.sync = sync
        self.settings = settings
        self.clock = clock
        self.single_flight = single_flight
        self.count_codat_call = count_codat_call  # by business id; raises RateLimited over the limit

    async def fresh(self, company_id: str, connection: FeedConnection) -> Link:
        if self._is_fresh(connection):
            return Link(connection.link_url, as_utc(connection.link_expires_at), connection)  # type: ignore[arg-type]
        return await self.single_flight.do(
            ("link", connection.id), lambda: self._refresh(company_id, connection.id)
        )

    def _is_fresh(self, connection: FeedConnection) -> bool:
        if connection.link_url is None or connection.link_expires_at is None:
            return False
        margin = timedelta(seconds=self.settings.link_safety_margin_seconds)
        return as_utc(connection.link_expires_at) - margin > self.clock.now()

    async def _refresh(self, company_id: str, connection_id: int) -> Link:
        """One refresher across processes holds a short lease; the others wait for the link it stores."""
        while True:
            now = self.clock.now()
            async with self.sessions.begin() as session:
                repo = BankFeedRepository(session)
                connection = await repo.get_connection(connection_id)
                assert connection is not None
                if self._is_fresh(connection):
                    return Link(connection.link_url, as_utc(connection.link_expires_at), connection)  # type: ignore[arg-type]
                claimed = await repo.claim_link_lease(
                    connection_id,
                    now,
                    until=now + timedelta(seconds=LINK_LEASE_SECONDS),
                    fresh_until=now + timedelta(seconds=self.settings.link_safety_margin_seconds),
                )
            if claimed:
                LINK_REFRESHES.inc()
                return await self._read_from_codat(company_id, connection)
            await asyncio.sleep(LINK_POLL_SECONDS)

    async def _read_from_codat(self, company_id: str, connection: FeedConnection) -> Link:
        try:
            await self.count_codat_call(connection.business_id)
            fetched = await self.sync.read_connection(company_id, connection)
        except BaseException:
            async with self.sessions.begin() as session:
                await BankFeedRepository(session).release_link_lease(connection.id)
            raise
        now = self.clock.now()
        expires_at = self.sync.expiry_of(fetched.link_url, connection, now)
        async with self.sessions.begin() as session:
            repo = BankFeedRepository(session)
            await repo.store_link(connection.id, fetched.link_url, expires_at, now)
            if await repo.apply_connection_status(fetched.id, str(fetched.status), now):
                await repo.bump_feed_version(connection.business_id)
        connection.link_url, connection.link_expires_at, connection.status = (
            fetched.link_url,
            expires_at,
            str(fetched.status),
        )
        log.info("onboarding.link_refreshed", extra={"connection_id": connection.codat_connection_id})
        return Link(fetched.link_url, expires_at, connection)
