"""Re-read a connection and its source accounts from Codat and record what changed.

The same for every target: onboarding calls it when it needs the truth now (refresh, reconnect, a lapsed
link), and the reconciliation round calls it for connections whose webhooks may have been missed.
"""

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.changes import ChangeFeed
from app.bankfeed.exceptions import ConnectionGone, translate_codat_errors
from app.bankfeed.models import FeedConnection
from app.bankfeed.repository import BankFeedRepository
from app.clock import Clock, as_utc
from app.codat.client import CodatClient
from app.codat.exceptions import CodatNotFound
from app.codat.schemas import Connection
from app.config import CodatSettings

log = logging.getLogger(__name__)


class FeedSync:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        codat: CodatClient,
        settings: CodatSettings,
        clock: Clock,
        changes: ChangeFeed,
    ) -> None:
        self.sessions = sessions
        self.codat = codat
        self.settings = settings
        self.clock = clock
        self.changes = changes

    async def refresh_connection(self, company_id: str, connection: FeedConnection) -> None:
        """Codat's statuses of the connection and its accounts, and its current link, recorded here."""
        codat_connection_id = connection.codat_connection_id
        assert codat_connection_id is not None
        fetched = await self.read_connection(company_id, connection)
        with translate_codat_errors("refresh bank feed"):
            accounts = await self.codat.list_source_accounts(company_id, codat_connection_id)
        now = self.clock.now()
        async with self.sessions.begin() as session:
            repo = BankFeedRepository(session)
            changed = [await repo.apply_connection_status(codat_connection_id, str(fetched.status), now)]
            for account in accounts:
                status = str(account.status) if account.status is not None else None
                changed.append(
                    await repo.apply_account_status(
                        codat_connection_id, account.id, status, account.feed_start_date, now
                    )
                )
            await repo.store_link(
                connection.id, fetched.link_url, self.expiry_of(fetched.link_url, connection, now), now
            )
            if any(changed):
                await repo.bump_feed_version(connection.business_id)  # last: see the repository's lock order
        self.changes.notify(connection.business_id)

    async def read_connection(self, company_id: str, connection: FeedConnection) -> Connection:
        """Codat's view of the connection; a connection deleted at Codat is retired here as history."""
        assert connection.codat_connection_id is not None
        with translate_codat_errors("read connection"):
            try:
                return await self.codat.get_connection(company_id, connection.codat_connection_id)
            except CodatNotFound:
                async with self.sessions.begin() as session:
                    await BankFeedRepository(session).retire_connection(connection.id, status="Deleted")
                log.warning(
                    "reconcile.connection_gone", extra={"connection_id": connection.codat_connection_id}
                )
                raise ConnectionGone() from None

    def expiry_of(self, link_url: str, connection: FeedConnection, now: datetime) -> datetime:
        # Codat does not say when an OTP lapses: a new one lives a lifetime from now; the same one keeps its
        # expiry.
        if link_url == connection.link_url and connection.link_expires_at is not None:
            return as_utc(connection.link_expires_at)
        return now + timedelta(seconds=self.settings.otp_lifetime_seconds)
