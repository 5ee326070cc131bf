"""Connect's common steps, the same for every platform: a Codat company, a connection to the platform, the
chosen accounts as source accounts on it. Three Codat round trips, back to back.

Every Codat write's idempotency key is committed before the call that uses it: the company's in one
transaction before the first call (with the reads that refuse bad input, so a refusal changes nothing here or
at Codat); the connection's and the accounts' (a row each, up to hundreds) in another while Codat makes the
company, waited for before the connection is made (so they cost the SMB's wait nothing when a company is
made). Codat's answers are recorded in one statement after the accounts' call, while the
platform's hand-over is made (its view rendered, or a Sage code asked for), and also when a call fails, so
what was made is kept. No transaction is held across a Codat call, and an interrupted connect resumes with
the same keys: Codat replays instead of creating twice. A key older than any request still in flight is
resumed by first looking at Codat for what it made (rare: a transaction more).

The request's own Idempotency-Key (`Claim`) is claimed in the intents' transaction; the route keeps the
answer once it is sent (app/idempotency/route.py). Two commits on the SMB's wait, whatever the number of
accounts, when a company is made (the intents, the outcomes); the connection's and the accounts' intents
commit beside the create-company call.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.exceptions import translate_codat_errors
from app.bankfeed.holds import BROKEN_CONNECTION
from app.bankfeed.models import Business, FeedConnection
from app.bankfeed.platforms import BY_NAME, DEFAULT, Platform, PlatformName, by_key
from app.bankfeed.repository import (
    BankAccountRow,
    BankFeedRepository,
    ConnectionOutcome,
    FeedAccountOutcome,
    FeedAccountRow,
)
from app.clock import Clock, as_utc
from app.codat.client import CodatClient
from app.codat.schemas import Connection, SourceAccount
from app.config import CodatSettings
from app.db import one_statement_sessions
from app.errors import InvalidInput
from app.onboarding.accounts import Offer, SourceAccounts, offers
from app.onboarding.exceptions import PlatformInUse

log = logging.getLogger(__name__)

BUSINESS_TAG = "businessId"  # the Codat company tag that names our business
# An idempotency key older than this cannot belong to a request still in flight (their Codat deadline is
# shorter), so a resumed step may look for what it created and, finding nothing, use a new key.
STALE_REQUEST = timedelta(seconds=60)
T = TypeVar("T")


class Claim(Protocol):
    """The request's Idempotency-Key (app/idempotency): claimed in the intents' transaction, before any write
    (it may raise the key's earlier answer instead); the route keeps the answer once it is sent."""

    async def take(self, session: AsyncSession) -> None: ...


@dataclass(frozen=True, slots=True)
class Connected:
    """Where connect's common steps left the business: what the platform's flow hands over next, and the
    rows of its view as recorded."""

    platform: Platform
    company_id: str
    connection: FeedConnection
    business: Business
    bank_accounts: Sequence[BankAccountRow]  # every registered one
    feed_accounts: Sequence[FeedAccountRow]  # every one offered on the connection


@dataclass(slots=True)
class Intents:
    """What connect read and committed before its first Codat call (the company's key), and, once recorded
    beside create-company (`_company_and_account_intents`), the connection's and the accounts' rows with
    their keys and the bank accounts themselves (only their ids are read before: 500 rows cost ~5 ms)."""

    business: Business
    platform: Platform
    chosen_ids: list[str]
    current: FeedConnection | None  # the business's current connection, as read before the first call
    company_key: str | None  # None: the company is known, or an earlier attempt's key is stale
    connection: FeedConnection | None = None  # the current one, or the intent of one (its key)
    bank_accounts: Sequence[BankAccountRow] = ()  # every registered one
    feed_accounts: Sequence[FeedAccountRow] = ()  # every row on it, the chosen accounts' with their keys
    offers: list[Offer] | None = None  # the chosen accounts Codat has yet to make, in batches

    def intent(self) -> FeedConnection:
        """The connection, recorded beside create-company."""
        assert self.connection is not None, "read once the accounts' intents are recorded"
        return self.connection

    def chosen(self) -> list[BankAccountRow]:
        by_id = {a.id: a for a in self.bank_accounts}
        return [by_id[account_id] for account_id in self.chosen_ids]

    def set_feed_accounts(self, feed_accounts: Sequence[FeedAccountRow]) -> None:
        """The rows on the connection, and the batches of those still to be offered."""
        rows = {f.account_id: f for f in feed_accounts}
        pending = [(a, rows[a.id]) for a in self.chosen() if not rows[a.id].registered]
        self.feed_accounts, self.offers = feed_accounts, offers(pending, self.business.country)


@dataclass(slots=True)
class Outcomes:
    """What Codat made, recorded at once however far the chain got."""

    company_id: str | None = None
    connection: Connection | None = None
    accounts: list[SourceAccount] = field(default_factory=list)


class Connector:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        codat: CodatClient,
        settings: CodatSettings,
        clock: Clock,
    ) -> None:
        self.sessions = sessions
        self.statements = one_statement_sessions(sessions)
        self.codat = codat
        self.settings = settings
        self.clock = clock
        self.source_accounts = SourceAccounts(codat)

    async def connect(
        self,
        business_id: str,
        requested: PlatformName | None,
        account_ids: Sequence[str] | None,
        hand_over: Callable[[Connected], Awaitable[T]],
        claim: Claim | None = None,
    ) -> T:
        """The three steps, then `hand_over` (what the SMB gets next, from the rows as they are recorded,
        made while the outcomes are)."""
        intents = await self._record_intents(business_id, requested, account_ids, claim)
        outcomes = Outcomes()
        try:
            company_id = await self._company_and_account_intents(intents, outcomes)
            await self._connection(intents, company_id, outcomes)
            await self._source_accounts(intents, company_id, outcomes)
        except BaseException:
            await self._record_outcomes(
                intents, outcomes, _account_outcomes(outcomes)
            )  # what was made is kept
            raise
        accounts = _account_outcomes(outcomes)
        # Recorded while the hand-over is made: its view of 500 accounts is ~5 ms of CPU, about what
        # Postgres takes to record them.
        recording = asyncio.ensure_future(self._record_outcomes(intents, outcomes, accounts))
        try:
            await asyncio.sleep(0)  # the statement goes out first
            _registered(intents.feed_accounts, accounts)  # the rows as recorded
            handed = await hand_over(_connected(intents, company_id))
        finally:
            await asyncio.shield(recording)
        return handed

    # Before the first call: one transaction

    async def _record_intents(
        self,
        business_id: str,
        requested: PlatformName | None,
        account_ids: Sequence[str] | None,
        claim: Claim | None,
    ) -> Intents:
        now = self.clock.now()
        async with self.sessions.begin() as session:
            if claim is not None:
                await claim.take(session)
            repo = BankFeedRepository(session)
            business, latest, registered = await repo.business_connection_and_account_ids(business_id)
            chosen_ids = _chosen(registered, account_ids)
            platform = _platform_for(latest, requested)
            current = latest if latest is not None and latest.is_current else None
            company_key = await _company_key(repo, business, now)  # last: it locks the business row
        return Intents(business, platform, chosen_ids, current, company_key)

    async def _record_account_intents(self, intents: Intents) -> None:
        """The connection's and the accounts' rows with their keys, and the accounts' batches made ready to
        send, while Codat makes the company."""
        try:
            await self._account_intents(intents, intents.current)
        except IntegrityError:
            # Another process recorded a connection intent first (one current connection per business): the
            # same steps again take it.
            async with self.sessions() as session:
                current = await BankFeedRepository(session).current_connection(intents.business.id)
            await self._account_intents(intents, current)

    async def _account_intents(self, intents: Intents, current: FeedConnection | None) -> None:
        business_id = intents.business.id
        async with self.sessions.begin() as session:
            repo = BankFeedRepository(session)
            now = self.clock.now()
            connection = await _connection_intent(repo, business_id, current, intents.platform, now)
            intents.bank_accounts = await repo.bank_accounts(business_id)
            feed_accounts = await repo.add_feed_account_intents(
                connection.id, business_id, intents.chosen_ids
            )
        if connection is not current and current is not None:
            log.info(
                "onboarding.connection_replaced",
                extra={"business_id": business_id, "old_connection_id": current.codat_connection_id},
            )
        intents.connection = connection
        intents.set_feed_accounts(feed_accounts)

    # The calls

    async def _company_and_account_intents(self, intents: Intents, outcomes: Outcomes) -> str:
        """The company, while the accounts' intents are recorded; both are waited for, whichever fails."""
        company, recorded = await asyncio.gather(
            self._company(intents, outcomes), self._record_account_intents(intents), return_exceptions=True
        )
        if isinstance(company, BaseException):
            raise company
        if isinstance(recorded, BaseException):
            raise recorded
        return company

    async def _company(self, intents: Intents, outcomes: Outcomes) -> str:
        business = intents.business
        if business.codat_company_id is not None:
            return business.codat_company_id
        key = intents.company_key
        if key is None:
            outcomes.company_id = await self._find_company(business.id)
            if outcomes.company_id is not None:
                return outcomes.company_id
            key = await self._claim_company_key(business.id)
        with translate_codat_errors("create company"):
            company = await self.codat.create_company(
                business.name, idempotency_key=key, tags={BUSINESS_TAG: business.id}
            )
        log.info("onboarding.company_created", extra={"business_id": business.id, "company_id": company.id})
        outcomes.company_id = company.id
        return company.id

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

    async def _claim_company_key(self, business_id: str) -> str:
        """A new key for a stale one, so that Codat's replay of an old answer (its cache keeps even a 5xx for
        90 minutes) cannot block the business."""
        now = self.clock.now()
        async with self.sessions.begin() as session:
            repo = BankFeedRepository(session)
            return await repo.claim_company_request_key(business_id, now, now - STALE_REQUEST)

    async def _connection(self, intents: Intents, company_id: str, outcomes: Outcomes) -> None:
        if intents.intent().codat_connection_id is not None:
            return
        if _stale(intents.intent().created_at, self.clock.now()):
            adopted = await self._find_connection(intents.intent(), company_id)
            if adopted is not None:
                self._made(intents.intent(), adopted, outcomes)
                return
            await self._renew_connection_intent(intents)
        intent = intents.intent()
        with translate_codat_errors("create connection"):
            created = await self.codat.create_connection(
                company_id, intent.platform, idempotency_key=intent.request_key
            )
        self._made(intent, created, outcomes)
        log.info(
            "onboarding.connection_created",
            extra={"business_id": intent.business_id, "connection_id": created.id},
        )

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

    async def _renew_connection_intent(self, intents: Intents) -> None:
        """Replace an abandoned intent (its accounts' intents with it), so Codat's replay of an old answer
        under its key cannot block us."""
        try:
            await self._move_intents(intents, renew=True)
        except IntegrityError:
            await self._move_intents(intents, renew=False)  # another process renewed it: take its intent

    async def _move_intents(self, intents: Intents, renew: bool) -> None:
        stale = intents.intent()
        async with self.sessions.begin() as session:
            repo = BankFeedRepository(session)
            if renew:
                connection = await repo.renew_connection_intent(stale, self.clock.now())
            else:
                current = await repo.current_connection(stale.business_id)
                assert current is not None  # the unique index: there is one
                connection = current
            feed_accounts = await repo.add_feed_account_intents(
                connection.id, stale.business_id, intents.chosen_ids
            )
        intents.connection = connection
        intents.set_feed_accounts(feed_accounts)

    def _made(self, connection: FeedConnection, made: Connection, outcomes: Outcomes) -> None:
        connection.codat_connection_id, connection.status = made.id, str(made.status)
        connection.link_url = made.link_url
        connection.link_expires_at = self.clock.now() + timedelta(seconds=self.settings.otp_lifetime_seconds)
        outcomes.connection = made

    async def _source_accounts(self, intents: Intents, company_id: str, outcomes: Outcomes) -> None:
        codat_connection_id = intents.intent().codat_connection_id
        assert codat_connection_id is not None
        assert intents.offers is not None  # made ready with the rows
        await self.source_accounts.offer(company_id, codat_connection_id, intents.offers, outcomes.accounts)

    # After the last call, or a failed one

    async def _record_outcomes(
        self, intents: Intents, outcomes: Outcomes, accounts: Sequence[FeedAccountOutcome]
    ) -> None:
        """What Codat made (`accounts`: its answers for the accounts, from `outcomes`): one statement on
        Postgres, whole without a transaction around it."""
        if outcomes.company_id is None and outcomes.connection is None and not outcomes.accounts:
            return
        connection = intents.connection  # None: its intent was not recorded (nor a connection made)
        async with self.statements.begin() as session:
            await BankFeedRepository(session).record_connect_outcomes(
                intents.business.id,
                connection.id if connection else None,
                _connection_outcome(outcomes.connection, connection)
                if outcomes.connection and connection
                else None,
                accounts,
                outcomes.company_id,
            )


async def _connection_intent(
    repo: BankFeedRepository,
    business_id: str,
    current: FeedConnection | None,
    platform: Platform,
    now: datetime,
) -> FeedConnection:
    """The current connection, or the intent of a new one. An Unlinked or Deauthorized connection cannot
    be revived, and one never made at Codat may be for another platform: kept as history."""
    if current is not None and not _replaced(current, platform):
        return current
    if current is not None:
        await repo.retire_connection(current.id)
    return await repo.add_connection_intent(business_id, platform.key, now)


async def _company_key(repo: BankFeedRepository, business: Business, now: datetime) -> str | None:
    """The create-company key: stored once, shared by every caller; None when no company is to be made
    with it yet (known, or an earlier attempt's key is stale: what it made is looked for first)."""
    if business.codat_company_id is not None or _stale(business.company_requested_at, now):
        return None
    return await repo.claim_company_request_key(business.id, now, now - STALE_REQUEST)


def _chosen(registered: Sequence[str], account_ids: Sequence[str] | None) -> list[str]:
    """The accounts to connect (every registered one by default), each registered, else a 422 naming it."""
    if account_ids is None:
        if not registered:
            raise InvalidInput.for_field("accountIds", "the business has no registered bank accounts yet")
        return list(registered)
    known = set(registered)
    for index, account_id in enumerate(account_ids):
        if account_id not in known:
            raise InvalidInput.for_field(
                f"accountIds.{index}", f"no bank account {account_id!r} is registered"
            )
    return list(account_ids)


def _platform_for(latest: FeedConnection | None, requested: PlatformName | None) -> Platform:
    """The requested platform, else the latest connection's; another one only once that is not live."""
    current = by_key(latest.platform) if latest else DEFAULT
    platform = BY_NAME[requested] if requested else current
    if latest is not None and latest.is_current and _live(latest) and platform is not current:
        raise PlatformInUse(
            f"This business's bank feed goes to {current.label} ({current.name}); one platform at a time, or "
            "the same bank account would be counted twice. To move to another, disconnect first: "
            "POST /v1/bank-feed/disconnect."
        )
    return platform


def _live(connection: FeedConnection) -> bool:
    """Made at Codat and not stopped: the business's platform until it disconnects."""
    return connection.codat_connection_id is not None and connection.status not in BROKEN_CONNECTION


def _replaced(connection: FeedConnection, platform: Platform) -> bool:
    return connection.status in BROKEN_CONNECTION or (
        connection.codat_connection_id is None and connection.platform != platform.key
    )


def _stale(requested_at: datetime | None, now: datetime) -> bool:
    return requested_at is not None and as_utc(requested_at) < now - STALE_REQUEST


def _connected(intents: Intents, company_id: str) -> Connected:
    return Connected(
        intents.platform,
        company_id,
        intents.intent(),
        intents.business,
        intents.bank_accounts,
        intents.feed_accounts,
    )


def _registered(feed_accounts: Sequence[FeedAccountRow], accounts: Sequence[FeedAccountOutcome]) -> None:
    """The rows as recorded with the outcomes (record_connect_outcomes), for the view."""
    outcomes = {a.account_id: a for a in accounts}
    for row in feed_accounts:
        outcome = outcomes.get(row.account_id)
        if outcome is not None:
            row.registered, row.status, row.feed_start_date = True, outcome.status, outcome.feed_start_date


def _connection_outcome(made: Connection, connection: FeedConnection) -> ConnectionOutcome:
    assert connection.link_expires_at is not None  # set with it (`Connector._made`)
    return ConnectionOutcome(made.id, str(made.status), made.link_url, connection.link_expires_at)


def _account_outcomes(outcomes: Outcomes) -> list[FeedAccountOutcome]:
    return [_outcome(a) for a in outcomes.accounts]


def _outcome(account: SourceAccount) -> FeedAccountOutcome:
    status = str(account.status) if account.status is not None else None
    return FeedAccountOutcome(account.id, status, account.feed_start_date)
