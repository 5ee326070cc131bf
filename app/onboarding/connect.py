"""Connect's common steps, the same for every platform: a Codat company, a connection to the platform, the
chosen accounts as source accounts on it.

Each step records its intent (an idempotency key) and commits before calling Codat, then records the outcome
in a second short transaction, so no database transaction is held across a Codat call and an interrupted
onboarding resumes on the next call with the same keys: Codat replays instead of creating twice.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.exceptions import translate_codat_errors
from app.bankfeed.holds import BROKEN_CONNECTION
from app.bankfeed.models import BankAccount, Business, FeedConnection
from app.bankfeed.platforms import BY_NAME, DEFAULT, Platform, PlatformName, by_key
from app.bankfeed.repository import BankFeedRepository
from app.clock import Clock, as_utc
from app.codat.client import CodatClient
from app.codat.schemas import Connection
from app.config import CodatSettings
from app.errors import InvalidInput
from app.onboarding.accounts import SourceAccounts
from app.onboarding.exceptions import PlatformInUse

log = logging.getLogger(__name__)

BUSINESS_TAG = "businessId"  # the Codat company tag that names our business
# An idempotency key older than this cannot belong to a request still in flight (their Codat deadline is
# shorter), so a resumed step may look for what it created and, finding nothing, use a new key.
STALE_REQUEST_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Connected:
    """Where connect's common steps left the business: what the platform's flow hands over next."""

    platform: Platform
    company_id: str
    connection: FeedConnection


class Connector:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        codat: CodatClient,
        settings: CodatSettings,
        clock: Clock,
    ) -> None:
        self.sessions = sessions
        self.codat = codat
        self.settings = settings
        self.clock = clock
        self.source_accounts = SourceAccounts(sessions, codat)

    async def connect(
        self, business_id: str, requested: PlatformName | None, account_ids: Sequence[str] | None
    ) -> Connected:
        business, accounts = await self._load(business_id, account_ids)
        platform = await self._platform_for(business_id, requested)
        company_id = await self._ensure_company(business)
        connection = await self._ensure_connection(business_id, company_id, platform)
        await self.source_accounts.offer(company_id, connection, business.country, accounts)
        return Connected(platform, company_id, connection)

    async def _platform_for(self, business_id: str, requested: PlatformName | None) -> Platform:
        """The requested platform, else the latest connection's; another one only once that is not live."""
        async with self.sessions() as session:
            latest = await BankFeedRepository(session).latest_connection(business_id)
        current = by_key(latest.platform) if latest else DEFAULT
        platform = BY_NAME[requested] if requested else current
        if latest is not None and latest.is_current and _live(latest) and platform is not current:
            raise PlatformInUse(
                f"This business's bank feed goes to {current.label} ({current.name}); one platform at a "
                "time, or the same bank account would be counted twice. To move to another, disconnect "
                "first: POST /v1/bank-feed/disconnect."
            )
        return platform

    async def _load(
        self, business_id: str, account_ids: Sequence[str] | None
    ) -> tuple[Business, list[BankAccount]]:
        async with self.sessions() as session:
            repo = BankFeedRepository(session)
            business = await repo.require_business(business_id)
            registered = {a.id: a for a in await repo.list_bank_accounts(business_id)}
        if account_ids is None:
            if not registered:
                raise InvalidInput.for_field("accountIds", "the business has no registered bank accounts yet")
            return business, list(registered.values())
        return business, [_registered(registered, account_ids, i) for i in range(len(account_ids))]

    async def _ensure_company(self, business: Business) -> str:
        if business.codat_company_id is not None:
            return business.codat_company_id
        now = self.clock.now()
        stale_before = now - timedelta(seconds=STALE_REQUEST_SECONDS)
        resumed = (
            business.company_requested_at is not None and as_utc(business.company_requested_at) < stale_before
        )
        company_id = await self._find_company(business.id) if resumed else None
        if company_id is None:
            company_id = await self._create_company(business, now, stale_before)
        async with self.sessions.begin() as session:
            await BankFeedRepository(session).record_company(business.id, company_id)
        return company_id

    async def _find_company(self, business_id: str) -> str | None:
        """A company an earlier attempt created but never heard back about, found by our tag."""
        with translate_codat_errors("find company"):
            page = await self.codat.list_companies(tags=f"{BUSINESS_TAG} = {business_id}")
        if not page.results:
            return None
        log.info(
            "reconcile.company_adopted", extra={"business_id": business_id, "company_id": page.results[0].id}
        )
        return page.results[0].id

    async def _create_company(self, business: Business, now: datetime, stale_before: datetime) -> str:
        async with self.sessions.begin() as session:
            key = await BankFeedRepository(session).claim_company_request_key(business.id, now, stale_before)
        with translate_codat_errors("create company"):
            company = await self.codat.create_company(
                business.name, idempotency_key=key, tags={BUSINESS_TAG: business.id}
            )
        log.info("onboarding.company_created", extra={"business_id": business.id, "company_id": company.id})
        return company.id

    async def _ensure_connection(
        self, business_id: str, company_id: str, platform: Platform
    ) -> FeedConnection:
        await self._retire_replaced_connection(business_id, platform)
        connection = await self._current_connection_or_intent(business_id, platform)
        if connection.codat_connection_id is not None:
            return connection
        if as_utc(connection.created_at) < self.clock.now() - timedelta(seconds=STALE_REQUEST_SECONDS):
            adopted = await self._find_connection(connection, company_id)
            if adopted is not None:
                await self._record_connection(connection, adopted)
                return connection
            connection = await self._renew_connection_intent(connection)
        with translate_codat_errors("create connection"):
            created = await self.codat.create_connection(
                company_id, connection.platform, idempotency_key=connection.request_key
            )
        await self._record_connection(connection, created)
        log.info(
            "onboarding.connection_created", extra={"business_id": business_id, "connection_id": created.id}
        )
        return connection

    async def _find_connection(self, intent: FeedConnection, company_id: str) -> Connection | None:
        """A connection to the intent's platform an earlier attempt created but never heard back about."""
        with translate_codat_errors("find connection"):
            page = await self.codat.list_connections(company_id)
        async with self.sessions() as session:
            known = await BankFeedRepository(session).known_connection_ids(intent.business_id)
        unknown = [c for c in page.results if c.integration_key == intent.platform and c.id not in known]
        adopted = max(unknown, key=lambda c: c.created, default=None)
        if adopted is not None:
            log.info(
                "reconcile.connection_adopted",
                extra={"business_id": intent.business_id, "connection_id": adopted.id},
            )
        return adopted

    async def _renew_connection_intent(self, stale: FeedConnection) -> FeedConnection:
        """Replace an abandoned intent, so Codat's replay of an old answer under its key cannot block us."""
        try:
            async with self.sessions.begin() as session:
                repo = BankFeedRepository(session)
                return await repo.renew_connection_intent(stale, self.clock.now())
        except IntegrityError:
            # Another process renewed it.
            return await self._current_connection_or_intent(stale.business_id, by_key(stale.platform))

    async def _retire_replaced_connection(self, business_id: str, platform: Platform) -> None:
        """An Unlinked or Deauthorized connection cannot be revived, and one never made at Codat may be for
        another platform: keep it as history, start a new one."""
        try:
            async with self.sessions.begin() as session:
                repo = BankFeedRepository(session)
                connection = await repo.current_connection(business_id)
                if connection is None or not _replaced(connection, platform):
                    return
                await repo.retire_connection(connection.id)
                await repo.add_connection_intent(business_id, platform.key, self.clock.now())
        except IntegrityError:
            return  # another process replaced it first
        log.info(
            "onboarding.connection_replaced",
            extra={"business_id": business_id, "old_connection_id": connection.codat_connection_id},
        )

    async def _current_connection_or_intent(self, business_id: str, platform: Platform) -> FeedConnection:
        try:
            async with self.sessions.begin() as session:
                repo = BankFeedRepository(session)
                current = await repo.current_connection(business_id)
                return current or await repo.add_connection_intent(
                    business_id, platform.key, self.clock.now()
                )
        except IntegrityError:
            # Another process recorded the intent first; the unique index guarantees there is one.
            async with self.sessions() as session:
                connection = await BankFeedRepository(session).current_connection(business_id)
                assert connection is not None
                return connection

    async def _record_connection(self, connection: FeedConnection, created: Connection) -> None:
        expires_at = self.clock.now() + timedelta(seconds=self.settings.otp_lifetime_seconds)
        async with self.sessions.begin() as session:
            await BankFeedRepository(session).record_connection(
                connection.id, created.id, str(created.status), created.link_url, expires_at
            )
        connection.codat_connection_id, connection.status = created.id, str(created.status)
        connection.link_url, connection.link_expires_at = created.link_url, expires_at


def _registered(registered: dict[str, BankAccount], account_ids: Sequence[str], index: int) -> BankAccount:
    account = registered.get(account_ids[index])
    if account is None:
        raise InvalidInput.for_field(
            f"accountIds.{index}", f"no bank account {account_ids[index]!r} is registered"
        )
    return account


def _live(connection: FeedConnection) -> bool:
    """Made at Codat and not stopped: the business's platform until it disconnects."""
    return connection.codat_connection_id is not None and connection.status not in BROKEN_CONNECTION


def _replaced(connection: FeedConnection, platform: Platform) -> bool:
    return connection.status in BROKEN_CONNECTION or (
        connection.codat_connection_id is None and connection.platform != platform.key
    )
