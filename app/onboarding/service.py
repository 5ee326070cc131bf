"""Onboarding: a Codat company, a connection to the business's platform and source accounts, then what the
SMB needs for the platform's next step (app/onboarding/flows.py): a live link, or a one-time code for Sage.

Each step records its intent (an idempotency key) and commits before calling Codat, then records the outcome
in a second short transaction, so no database transaction is held across a Codat call and an interrupted
onboarding resumes on the next call with the same keys: Codat replays instead of creating twice.
"""

import asyncio
import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.changes import ChangeFeed
from app.bankfeed.exceptions import (
    AccountNotFound,
    ConnectionGone,
    NotConnected,
    translate_codat_errors,
)
from app.bankfeed.holds import BROKEN_CONNECTION, CREDENTIALS_REVOKED, set_write_hold
from app.bankfeed.models import BankAccount, Business, FeedAccount, FeedConnection
from app.bankfeed.platforms import BY_NAME, DEFAULT, Platform, PlatformName, by_key
from app.bankfeed.repository import BankFeedRepository, FeedAccountOutcome, new_request_key
from app.bankfeed.sync import FeedSync
from app.clock import Clock, as_utc
from app.codat import codat_deadline
from app.codat.client import CodatClient
from app.codat.exceptions import CodatNotFound, CodatRejected
from app.codat.schemas import (
    BankFeedMapping,
    BatchCreateResult,
    Connection,
    Credentials,
    RoutingInfo,
    SourceAccount,
    SourceAccountPrototype,
)
from app.config import CodatSettings
from app.errors import InvalidInput
from app.metrics import LINK_REFRESHES
from app.onboarding.exceptions import NotAuthorized, NotForThisPlatform, PlatformInUse
from app.onboarding.flows import Handover, Link, Operation, SageCode, refusal, strategy
from app.onboarding.singleflight import SingleFlight

log = logging.getLogger(__name__)

LINK_LEASE_SECONDS = 30
LINK_POLL_SECONDS = 0.05
BUSINESS_TAG = "businessId"  # the Codat company tag that names our business
# An idempotency key older than this cannot belong to a request still in flight (their Codat deadline is
# shorter), so a resumed step may look for what it created and, finding nothing, use a new key.
STALE_REQUEST_SECONDS = 60
BATCH_SIZE = 100  # Codat sets no maximum for the batch endpoint; keep each request a sensible size.
CARD_TYPES = frozenset({"creditCard", "prepaidCard"})  # Codat maps these only to credit-card accounts
# Codat's names for the fields of a mapping, ours, and what its refusal means (docs.codat.io:
# bank-feeds/mapping/api-mapping, bank-feeds/create-account).
CODAT_MAPPING_FIELDS = {
    "sourceAccountId": "accountId",
    "targetAccountId": "targetAccountId",
    "feedStartDate": "feedStartDate",
}
MAPPING_REFUSALS = {
    "accountId": "{platform} refused to map this account: it is already mapped to another account, or a new "
    "account in its currency needs multicurrency turned on in {platform}",
    "targetAccountId": "{platform} refused this account: it must be in the same currency and of the same "
    "kind, and fed by no other account; choose one of GET /v1/bank-feed/mapping's options",
    "feedStartDate": "{platform} refused this feed start date: choose a day that is not in the future",
}


@dataclass(frozen=True, slots=True)
class AccountMapping:
    """A registered account and Codat's mapping of it: its target, and the targets it may feed."""

    account: BankAccount
    mapping: BankFeedMapping


def routing_info(account: BankAccount, country: str) -> RoutingInfo | None:
    if account.routing_number is None:
        return None
    return RoutingInfo(bank_code=account.routing_number, type="aba" if country == "US" else "rtn")


def source_account_prototype(account: BankAccount, country: str) -> SourceAccountPrototype:
    return SourceAccountPrototype(
        id=account.id,
        account_name=account.name,
        account_type=account.account_type,
        account_number=account.account_number,
        currency=account.currency,
        balance=account.balance,
        routing_info=routing_info(account, country),
    )


def batch_request_key(feed_accounts: Sequence[FeedAccount]) -> str:
    """The same set of pending accounts always gets the same batch key, so a resumed batch replays."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ",".join(sorted(a.request_key for a in feed_accounts))))


def already_exists(result: BatchCreateResult) -> bool:
    return result.status_code in (400, 409) and "exist" in (result.error or "").lower()


class OnboardingService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        codat: CodatClient,
        settings: CodatSettings,
        clock: Clock,
        single_flight: SingleFlight,
        changes: ChangeFeed,
    ) -> None:
        self.sessions = sessions
        self.codat = codat
        self.settings = settings
        self.clock = clock
        self.single_flight = single_flight
        self.changes = changes
        self.sync = FeedSync(sessions, codat, settings, clock, changes)

    # Public operations

    async def connect(
        self, business_id: str, platform: PlatformName | None, account_ids: Sequence[str] | None
    ) -> Handover:
        """Start or resume onboarding for the chosen accounts (all registered ones by default)."""
        with codat_deadline(self.settings.request_deadline_seconds):
            return await self.single_flight.do(
                ("connect", business_id, platform, tuple(account_ids or ())),
                lambda: self._connect(business_id, platform, account_ids),
            )

    async def reconnect(self, business_id: str) -> Handover:
        """Mend a broken feed: the same accounts on a live connection (a new one if Codat's is dead), to the
        same platform.

        Codat is asked first, so a missed webhook cannot make us hand out a link to a dead connection.
        """
        with codat_deadline(self.settings.request_deadline_seconds):
            offered = await self._refresh_and_list_offered(business_id)
            return await self.connect(business_id, None, offered or None)

    async def _refresh_and_list_offered(self, business_id: str) -> list[str]:
        business, connection = await self._business_and_connection(business_id)
        if connection is None:
            return []
        if connection.codat_connection_id is not None:
            try:
                await self.sync.refresh_connection(business.codat_company_id, connection)  # type: ignore[arg-type]
            except ConnectionGone:
                pass  # connect creates its successor
        return await self._offered_on(connection.id)

    async def require(self, business_id: str, operation: Operation) -> None:
        """Refuse an operation of another platform's flow, before anything is done or counted."""
        async with self.sessions() as session:
            latest = await BankFeedRepository(session).latest_connection(business_id)
        _require(by_key(latest.platform) if latest else DEFAULT, operation)

    async def link(self, business_id: str) -> Link:
        """A link with more than the safety margin left, minted afresh when the stored one has lapsed."""
        with codat_deadline(self.settings.request_deadline_seconds):
            business, connection = await self._current_for(business_id, Operation.LINK)
            assert business.codat_company_id is not None
            try:
                return await self.fresh_link(business.codat_company_id, connection)
            except ConnectionGone:
                offered = await self._offered_on(connection.id)
                handover = await self._connect(business_id, None, offered or None)
                assert handover.link is not None  # the same platform: a flow with links
                return handover.link

    async def generate_credentials(self, business_id: str) -> Credentials:
        with codat_deadline(self.settings.request_deadline_seconds):
            ids = _codat_ids(*await self._current_for(business_id, Operation.CREDENTIALS))
            with translate_codat_errors("generate credentials"):
                return await self.codat.generate_credentials(*ids, idempotency_key=new_request_key())

    async def revoke_credentials(self, business_id: str) -> None:
        with codat_deadline(self.settings.request_deadline_seconds):
            company_id, connection_id = _codat_ids(
                *await self._current_for(business_id, Operation.CREDENTIALS)
            )
            with translate_codat_errors("revoke credentials"):
                await self.codat.revoke_credentials(company_id, connection_id)
            # Codat: writes from the accounts linked with them stop, until linked again with new ones.
            async with self.sessions.begin() as session:
                await set_write_hold(session, connection_id, None, CREDENTIALS_REVOKED)
                await BankFeedRepository(session).bump_feed_version(business_id)
            self.changes.notify(business_id)

    async def sage_code(self, business_id: str) -> SageCode:
        """A new one-time code for Sage; it replaces the previous one at Codat."""
        with codat_deadline(self.settings.request_deadline_seconds):
            business, connection = await self._current_for(business_id, Operation.SAGE)
            assert business.codat_company_id is not None
            return await self.new_sage_code(business.codat_company_id, connection)

    async def authorize_sage(self, business_id: str, authorization_id: str) -> None:
        """Sage's sign-in through the fintech's login page: hand Codat the id Sage put on the page's URL."""
        with codat_deadline(self.settings.request_deadline_seconds):
            ids = _codat_ids(*await self._current_for(business_id, Operation.SAGE))
            with translate_codat_errors("authorize the Sage connection"):
                try:
                    authorized = await self.codat.update_connection_authorization(*ids, authorization_id)
                except CodatNotFound as exc:
                    if "authorizationId" not in exc.item_ids:
                        raise
                    raise InvalidInput.for_field(
                        "authorizationId", "Sage did not issue this id, or it was already used: sign in again"
                    ) from exc
            await self._apply_status(business_id, authorized)

    async def mapping(self, business_id: str) -> list[AccountMapping]:
        """Each account on the feed with Codat's mapping of it; refused until the SMB has authorized."""
        with codat_deadline(self.settings.request_deadline_seconds):
            business, connection = await self._current_for(business_id, Operation.MAPPING)
            return await self._mappings(business, connection)

    async def map_account(
        self, business_id: str, account_id: str, target_id: str | None, feed_start: date | None
    ) -> None:
        """Map an account to one of the targets Codat offers it (None: a new account in the books).

        The target is checked against the options first: nothing is sent to Codat for one it would refuse.
        """
        with codat_deadline(self.settings.request_deadline_seconds):
            business, connection = await self._current_for(business_id, Operation.MAPPING)
            offered = next(
                (m for m in await self._mappings(business, connection) if m.account.id == account_id), None
            )
            if offered is None:
                raise AccountNotFound(f"No bank account {account_id!r} is on this business's feed.")
            target_name = _chosen_target(by_key(connection.platform), offered, target_id)
            with translate_codat_errors("map account"), _mapping_refusals(by_key(connection.platform)):
                result = await self.codat.create_bank_account_mapping(
                    *_codat_ids(business, connection),
                    account_id,
                    target_id,
                    feed_start,
                    idempotency_key=new_request_key(),
                )
            await self._record_mapping(
                connection, account_id, result.target_account_id or target_id, target_name, result.status
            )

    async def disconnect(self, business_id: str) -> None:
        """Stop the feed at Codat (the connection turns Unlinked); a later connect makes a new connection.

        Codat is asked first: a missed webhook must not make us skip the unlink of a connection it links.
        """
        with codat_deadline(self.settings.request_deadline_seconds):
            business, connection = await self._current(business_id)
            company_id, connection_id = _codat_ids(business, connection)
            try:
                at_codat = await self.sync.read_connection(company_id, connection)
            except ConnectionGone:
                return  # deleted at Codat: already set aside here
            if str(at_codat.status) == "Linked":
                with translate_codat_errors("disconnect"):
                    at_codat = await self.codat.unlink_connection(
                        company_id, connection_id, idempotency_key=new_request_key()
                    )
                log.info(
                    "onboarding.disconnected",
                    extra={"business_id": business_id, "connection_id": connection_id},
                )
            if str(at_codat.status) == "PendingAuth":
                await self._abandon(connection)  # Codat unlinks only Linked ones; nothing flows yet
            else:
                await self._apply_status(business_id, at_codat)

    async def rename_account(self, business_id: str, account_id: str, name: str) -> None:
        """Rename at Codat first (if the account is offered there), then here: a failure changes nothing."""
        with codat_deadline(self.settings.request_deadline_seconds):
            business, connection, feed_account = await self._load_for_rename(business_id, account_id)
            if connection is not None and feed_account is not None and feed_account.registered:
                with translate_codat_errors("rename account"):
                    await self.codat.rename_source_account(
                        *_codat_ids(business, connection),
                        account_id,
                        name,
                        idempotency_key=new_request_key(),
                    )
            async with self.sessions.begin() as session:
                repo = BankFeedRepository(session)
                account = await repo.get_bank_account(business_id, account_id)
                assert account is not None
                account.name = name
                await repo.bump_feed_version(business_id)

    async def refresh(self, business_id: str) -> None:
        """Re-read the connection and its accounts from Codat, for when a webhook was missed."""
        with codat_deadline(self.settings.request_deadline_seconds):
            business, connection = await self._current(business_id)
            try:
                await self.sync.refresh_connection(business.codat_company_id, connection)  # type: ignore[arg-type]
            except ConnectionGone:
                pass  # the view now offers to connect again

    # Steps of connect

    async def _connect(
        self, business_id: str, requested: PlatformName | None, account_ids: Sequence[str] | None
    ) -> Handover:
        business, accounts = await self._load_for_connect(business_id, account_ids)
        platform = await self._platform_for(business_id, requested)
        company_id = await self._ensure_company(business)
        connection = await self._ensure_connection(business_id, company_id, platform)
        await self._ensure_offered(company_id, connection, business.country, accounts)
        return await strategy(platform).handover(self, platform, company_id, connection)

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

    async def _load_for_connect(
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
        return business, [self._registered(registered, account_ids, i) for i in range(len(account_ids))]

    @staticmethod
    def _registered(
        registered: dict[str, BankAccount], account_ids: Sequence[str], index: int
    ) -> BankAccount:
        account = registered.get(account_ids[index])
        if account is None:
            raise InvalidInput.for_field(
                f"accountIds.{index}", f"no bank account {account_ids[index]!r} is registered"
            )
        return account

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

    async def _ensure_offered(
        self, company_id: str, connection: FeedConnection, country: str, accounts: Sequence[BankAccount]
    ) -> None:
        async with self.sessions.begin() as session:
            feed_accounts = await BankFeedRepository(session).add_feed_account_intents(
                connection.id, connection.business_id, [a.id for a in accounts]
            )
        by_id = {a.id: a for a in accounts}
        pending = [f for f in feed_accounts if not f.registered]
        chunks = [pending[start : start + BATCH_SIZE] for start in range(0, len(pending), BATCH_SIZE)]
        # The batches at once (the client keeps within Codat's concurrency per company): one round trip for
        # 500 accounts as for 50. Each records its own outcome; every one is waited for before a failure is
        # raised, so what succeeded is kept, and a retry resumes the rest with the same keys.
        outcomes = await asyncio.gather(
            *(
                self._offer(
                    company_id,
                    connection,
                    [source_account_prototype(by_id[f.account_id], country) for f in chunk],
                    chunk,
                )
                for chunk in chunks
            ),
            return_exceptions=True,
        )
        failure = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failure is not None:
            raise failure

    async def _offer(
        self,
        company_id: str,
        connection: FeedConnection,
        prototypes: list[SourceAccountPrototype],
        feed_accounts: list[FeedAccount],
    ) -> None:
        codat_connection_id = connection.codat_connection_id
        assert codat_connection_id is not None
        if len(prototypes) == 1:
            created = await self._offer_one(company_id, codat_connection_id, prototypes[0], feed_accounts[0])
            results = [created]
        else:
            with translate_codat_errors("add source accounts"):
                batch = await self.codat.create_source_accounts(
                    company_id,
                    codat_connection_id,
                    prototypes,
                    idempotency_key=batch_request_key(feed_accounts),
                )
            results = await self._batch_outcome(company_id, codat_connection_id, batch)
        await self._record_offered(connection, results)

    async def _offer_one(
        self,
        company_id: str,
        codat_connection_id: str,
        prototype: SourceAccountPrototype,
        feed_account: FeedAccount,
    ) -> SourceAccount:
        with translate_codat_errors("add source account"):
            try:
                return await self.codat.create_source_account(
                    company_id, codat_connection_id, prototype, idempotency_key=feed_account.request_key
                )
            except CodatRejected as exc:
                # Codat refuses an id it already has: adopt that account instead of failing the onboarding.
                adopted = (
                    await self._adopt(company_id, codat_connection_id, [prototype.id])
                    if exc.status_code in (400, 409)
                    else []
                )
                if not adopted:
                    raise
                return adopted[0]

    async def _batch_outcome(
        self, company_id: str, codat_connection_id: str, batch: list[BatchCreateResult]
    ) -> list[SourceAccount]:
        created = [r.account for r in batch if r.account is not None and r.status_code < 300]
        existing = [r.source_account_id for r in batch if already_exists(r)]
        failed = [r for r in batch if r.account is None and not already_exists(r)]
        if failed:
            log.error(
                "codat.batch_rejected",
                extra={
                    "accounts": [r.source_account_id for r in failed],
                    "errors": [r.error for r in failed],
                },
            )
        adopted = await self._adopt(company_id, codat_connection_id, existing) if existing else []
        return created + adopted

    async def _adopt(
        self, company_id: str, codat_connection_id: str, account_ids: Sequence[str]
    ) -> list[SourceAccount]:
        """Accounts Codat already has (a lost response, or created by hand) are taken as they are there."""
        with translate_codat_errors("list source accounts"):
            listed = await self.codat.list_source_accounts(company_id, codat_connection_id)
        adopted = [a for a in listed if a.id in set(account_ids)]
        log.info("onboarding.accounts_adopted", extra={"accounts": [a.id for a in adopted]})
        return adopted

    async def _record_offered(self, connection: FeedConnection, accounts: Sequence[SourceAccount]) -> None:
        async with self.sessions.begin() as session:
            repo = BankFeedRepository(session)
            outcomes = [
                FeedAccountOutcome(a.id, str(a.status) if a.status is not None else None, a.feed_start_date)
                for a in accounts
            ]
            await repo.record_feed_accounts(connection.id, outcomes)
            await repo.bump_feed_version(connection.business_id)

    # Links

    def _link_is_fresh(self, connection: FeedConnection) -> bool:
        if connection.link_url is None or connection.link_expires_at is None:
            return False
        margin = timedelta(seconds=self.settings.link_safety_margin_seconds)
        return as_utc(connection.link_expires_at) - margin > self.clock.now()

    async def fresh_link(self, company_id: str, connection: FeedConnection) -> Link:
        if self._link_is_fresh(connection):
            return Link(connection.link_url, as_utc(connection.link_expires_at), connection)  # type: ignore[arg-type]
        return await self.single_flight.do(
            ("link", connection.id), lambda: self._refresh_link(company_id, connection.id)
        )

    async def _refresh_link(self, company_id: str, connection_id: int) -> Link:
        """One refresher across processes holds a short lease; the others wait for the link it stores."""
        while True:
            now = self.clock.now()
            async with self.sessions.begin() as session:
                repo = BankFeedRepository(session)
                connection = await repo.get_connection(connection_id)
                assert connection is not None
                if self._link_is_fresh(connection):
                    return Link(connection.link_url, as_utc(connection.link_expires_at), connection)  # type: ignore[arg-type]
                claimed = await repo.claim_link_lease(
                    connection_id,
                    now,
                    until=now + timedelta(seconds=LINK_LEASE_SECONDS),
                    fresh_until=now + timedelta(seconds=self.settings.link_safety_margin_seconds),
                )
            if claimed:
                LINK_REFRESHES.inc()
                return await self._read_link_from_codat(company_id, connection)
            await asyncio.sleep(LINK_POLL_SECONDS)

    async def _read_link_from_codat(self, company_id: str, connection: FeedConnection) -> Link:
        try:
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

    # Sage codes

    async def new_sage_code(self, company_id: str, connection: FeedConnection) -> SageCode:
        """A one-time code for Sage (each replaces the last at Codat); a secret, neither logged nor stored."""
        assert connection.codat_connection_id is not None
        with translate_codat_errors("make a Sage code"):
            otp = await self.codat.generate_otp(
                company_id, connection.codat_connection_id, idempotency_key=new_request_key()
            )
        log.info("onboarding.sage_code_issued", extra={"connection_id": connection.codat_connection_id})
        return SageCode(connection.codat_connection_id, otp.otp, otp.expiry)

    # Mapping

    async def _mappings(self, business: Business, connection: FeedConnection) -> list[AccountMapping]:
        with translate_codat_errors("read the mapping"):
            mappings = await self.codat.get_bank_account_mapping(*_codat_ids(business, connection))
        async with self.sessions() as session:
            repo = BankFeedRepository(session)
            offered = {f.account_id for f in await repo.feed_accounts(connection.id) if f.registered}
            accounts = {a.id: a for a in await repo.list_bank_accounts(business.id) if a.id in offered}
        ours = [
            AccountMapping(accounts[m.source_account_id], m)
            for m in mappings
            if m.source_account_id in accounts
        ]
        authorized = all(m.mapping.target_account_options is not None for m in ours)
        if authorized and connection.status == "PendingAuth":
            # Codat offers targets only once the SMB has authorized: the connection.connected webhook is late
            # or lost, so read the connection now rather than have the view ask to authorize again.
            with suppress(ConnectionGone):
                await self.sync.refresh_connection(business.codat_company_id, connection)  # type: ignore[arg-type]
        if not authorized:
            raise NotAuthorized(
                f"Sign in to {by_key(connection.platform).label} first: GET /v1/bank-feed/link; the accounts "
                "to choose from are known once the connection is allowed."
            )
        return ours

    async def _record_mapping(
        self,
        connection: FeedConnection,
        account_id: str,
        target_id: str | None,
        name: str | None,
        status: str | None,
    ) -> None:
        async with self.sessions.begin() as session:
            repo = BankFeedRepository(session)
            await repo.record_mapping(connection.id, account_id, target_id, name, status or "connecting")
            await repo.bump_feed_version(connection.business_id)
        self.changes.notify(connection.business_id)
        log.info(
            "onboarding.account_mapped",
            extra={"connection_id": connection.codat_connection_id, "account_id": account_id},
        )

    # Statuses

    async def _apply_status(self, business_id: str, connection: Connection) -> None:
        """Codat's answer about the connection, recorded as a webhook would be."""
        async with self.sessions.begin() as session:
            repo = BankFeedRepository(session)
            if await repo.apply_connection_status(connection.id, str(connection.status), self.clock.now()):
                await repo.bump_feed_version(business_id)
        self.changes.notify(business_id)

    async def _abandon(self, connection: FeedConnection) -> None:
        """A connection the SMB never authorized: kept as history; the next connect starts afresh."""
        async with self.sessions.begin() as session:
            repo = BankFeedRepository(session)
            await repo.retire_connection(connection.id)
            await repo.bump_feed_version(connection.business_id)
        self.changes.notify(connection.business_id)

    async def _offered_on(self, connection_id: int) -> list[str]:
        async with self.sessions() as session:
            return sorted(
                f.account_id for f in await BankFeedRepository(session).feed_accounts(connection_id)
            )

    # Loading

    async def _business_and_connection(self, business_id: str) -> tuple[Business, FeedConnection | None]:
        async with self.sessions() as session:
            repo = BankFeedRepository(session)
            return await repo.require_business(business_id), await repo.current_connection(business_id)

    async def _current(self, business_id: str) -> tuple[Business, FeedConnection]:
        business, connection = await self._business_and_connection(business_id)
        if connection is None or connection.codat_connection_id is None:
            raise NotConnected(
                "This business has no bank-feed connection yet: call POST /v1/bank-feed/connect first."
            )
        return business, connection

    async def _current_for(self, business_id: str, operation: Operation) -> tuple[Business, FeedConnection]:
        """The business and its connection, if the operation is one of its platform's flow."""
        business, connection = await self._current(business_id)
        _require(by_key(connection.platform), operation)
        return business, connection

    async def _load_for_rename(
        self, business_id: str, account_id: str
    ) -> tuple[Business, FeedConnection | None, FeedAccount | None]:
        async with self.sessions() as session:
            repo = BankFeedRepository(session)
            business = await repo.get_business(business_id)
            if business is None or await repo.get_bank_account(business_id, account_id) is None:
                raise AccountNotFound("No such bank account for this business.")
            connection = await repo.current_connection(business_id)
            if connection is None or connection.codat_connection_id is None:
                return business, None, None
            feed_account = next(
                (f for f in await repo.feed_accounts(connection.id) if f.account_id == account_id), None
            )
            return business, connection, feed_account


def _codat_ids(business: Business, connection: FeedConnection) -> tuple[str, str]:
    """Codat's company and connection ids of a connection made at Codat (both are set once it is)."""
    assert business.codat_company_id is not None
    assert connection.codat_connection_id is not None
    return business.codat_company_id, connection.codat_connection_id


def _require(platform: Platform, operation: Operation) -> None:
    reason = refusal(platform, operation)
    if reason is not None:
        raise NotForThisPlatform(reason)


def _live(connection: FeedConnection) -> bool:
    """Made at Codat and not stopped: the business's platform until it disconnects."""
    return connection.codat_connection_id is not None and connection.status not in BROKEN_CONNECTION


def _replaced(connection: FeedConnection, platform: Platform) -> bool:
    return connection.status in BROKEN_CONNECTION or (
        connection.codat_connection_id is None and connection.platform != platform.key
    )


def _chosen_target(platform: Platform, offered: AccountMapping, target_id: str | None) -> str | None:
    """The name of the chosen target if Codat offers it to the account (None for a new account); else a 422
    saying which accounts the platform offers."""
    options = offered.mapping.target_account_options or []
    if target_id is None:
        return None  # the platform names the new account
    chosen = next((o for o in options if o.id == target_id), None)
    if chosen is None:
        kind = "credit-card" if offered.account.account_type in CARD_TYPES else "bank"
        raise InvalidInput.for_field(
            "targetAccountId",
            f"{platform.label} offers only {kind} accounts in {offered.account.currency} that no other "
            "account feeds for this account: choose one of its options (GET /v1/bank-feed/mapping), or null "
            "for a new account",
        )
    return chosen.name


@contextmanager
def _mapping_refusals(platform: Platform) -> Iterator[None]:
    """Codat's 400 to a mapping names the field: the caller's to fix, so a 422 naming ours (Codat's own text
    goes to the log only, as for every refusal)."""
    try:
        yield
    except CodatRejected as exc:
        field = CODAT_MAPPING_FIELDS.get(exc.item_ids[0]) if exc.item_ids else None
        if exc.status_code != 400 or field is None:
            raise
        log.info(
            "codat.mapping_refused",
            extra={"field": exc.item_ids[0], "codat_validation": exc.validation_errors},
        )
        raise InvalidInput.for_field(field, MAPPING_REFUSALS[field].format(platform=platform.label)) from exc
