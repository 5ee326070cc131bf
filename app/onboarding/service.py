"""Onboarding's public operations, used by the router, the console and the reconciliation round.

Connect's common steps are in app/onboarding/connect.py (company, connection, source accounts in
app/onboarding/accounts.py); what the SMB is handed next depends on the platform's flow
(app/onboarding/flows.py): a live link (app/onboarding/links.py) or a one-time code for Sage. Mapping
through Codat is in app/onboarding/mapping.py.
"""

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.changes import ChangeFeed
from app.bankfeed.exceptions import AccountNotFound, ConnectionGone, NotConnected, translate_codat_errors
from app.bankfeed.holds import CREDENTIALS_REVOKED, set_write_hold
from app.bankfeed.models import Business, FeedConnection
from app.bankfeed.platforms import DEFAULT, Platform, PlatformName, by_key
from app.bankfeed.repository import BankFeedRepository, FeedAccountRow, new_request_key
from app.bankfeed.sync import FeedSync
from app.bankfeed.view import bank_feed_view
from app.clock import Clock
from app.codat import codat_deadline
from app.codat.client import CodatClient
from app.codat.exceptions import CodatNotFound
from app.codat.schemas import Connection, Credentials
from app.config import CodatSettings
from app.errors import InvalidInput
from app.idempotency.route import IdempotencyKeyInFlight, IdempotencyKeyReused, Replayed
from app.onboarding.connect import Claim, Connected, Connector
from app.onboarding.exceptions import NotForThisPlatform
from app.onboarding.flows import Handover, Link, Operation, SageCode, refusal, strategy
from app.onboarding.links import Links
from app.onboarding.mapping import AccountMapping, Mappings
from app.onboarding.singleflight import SingleFlight
from app.ratelimit import Limiter

log = logging.getLogger(__name__)


class OnboardingService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        codat: CodatClient,
        settings: CodatSettings,
        clock: Clock,
        single_flight: SingleFlight,
        changes: ChangeFeed,
        limiter: Limiter,
    ) -> None:
        self.sessions = sessions
        self.codat = codat
        self.settings = settings
        self.clock = clock
        self.single_flight = single_flight
        self.changes = changes
        self.limiter = limiter
        self.sync = FeedSync(sessions, codat, settings, clock, changes)
        self.connector = Connector(sessions, codat, settings, clock)
        self.links = Links(sessions, self.sync, settings, clock, single_flight, limiter.codat_call)
        self.mappings = Mappings(sessions, codat, self.sync, changes)

    async def connect(
        self,
        business_id: str,
        platform: PlatformName | None,
        account_ids: Sequence[str] | None,
        claim: Claim | None = None,
    ) -> Handover:
        """Start or resume onboarding for the chosen accounts (all registered ones by default); `claim`: the
        request's Idempotency-Key, claimed in connect's own first transaction."""
        led = False

        async def lead() -> Handover:
            nonlocal led
            led = True
            return await self._connect(business_id, platform, account_ids, claim)

        flight = ("connect", business_id, platform, tuple(account_ids or ()))
        with codat_deadline(self.settings.request_deadline_seconds):
            if claim is not None and self.single_flight.running(flight):
                # About to join another request's connect: this one's key is claimed first, on its own (a
                # 409 while a request with the same key is in flight), and answered by the route.
                async with self.sessions.begin() as session:
                    await claim.take(session)
                claim = None  # taken: should this one lead after all, its intents do not claim it again
            try:
                return await self.single_flight.do(flight, lead)
            except (Replayed, IdempotencyKeyInFlight, IdempotencyKeyReused):
                if led:
                    raise
                # The request this one joined was refused for its own Idempotency-Key: not ours to share.
                return await self._connect(business_id, platform, account_ids, claim)

    async def reconnect(self, business_id: str) -> Handover:
        """Mend a broken feed: the same accounts on a live connection (a new one if Codat's is dead), to the
        same platform.

        Codat is asked first, so a missed webhook cannot make us hand out a link to a dead connection.
        """
        with codat_deadline(self.settings.request_deadline_seconds):
            offered = await self._refresh_and_list_offered(business_id)
            return await self.connect(business_id, None, offered or None)

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
                await self.limiter.codat_call(business_id)  # connecting again: more calls to Codat
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
            return await self.mappings.read(_codat_ids(business, connection)[0], connection)

    async def map_account(
        self, business_id: str, account_id: str, target_id: str | None, feed_start: date | None
    ) -> None:
        """Map an account to one of the targets Codat offers it (None: a new account in the books)."""
        with codat_deadline(self.settings.request_deadline_seconds):
            business, connection = await self._current_for(business_id, Operation.MAPPING)
            company_id = _codat_ids(business, connection)[0]
            await self.mappings.map_account(company_id, connection, account_id, target_id, feed_start)

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

    # What a platform's flow hands over after connect (app/onboarding/flows.py `Steps`)

    async def fresh_link(self, company_id: str, connection: FeedConnection) -> Link:
        return await self.links.fresh(company_id, connection)

    async def new_sage_code(self, company_id: str, connection: FeedConnection) -> SageCode:
        """A one-time code for Sage (each replaces the last at Codat); a secret, neither logged nor stored."""
        assert connection.codat_connection_id is not None
        with translate_codat_errors("make a Sage code"):
            otp = await self.codat.generate_otp(
                company_id, connection.codat_connection_id, idempotency_key=new_request_key()
            )
        log.info("onboarding.sage_code_issued", extra={"connection_id": connection.codat_connection_id})
        return SageCode(connection.codat_connection_id, otp.otp, otp.expiry)

    async def _connect(
        self,
        business_id: str,
        requested: PlatformName | None,
        account_ids: Sequence[str] | None,
        claim: Claim | None = None,
    ) -> Handover:
        return await self.connector.connect(business_id, requested, account_ids, self._hand_over, claim)

    async def _hand_over(self, connected: Connected) -> Handover:
        platform = connected.platform
        handover = await strategy(platform).handover(
            self, platform, connected.company_id, connected.connection
        )
        # The view of the rows connect records with it, rather than a read of them back; a link read afresh
        # from Codat comes with the connection as it now is.
        connection = handover.link.connection if handover.link else connected.connection
        view = bank_feed_view(
            connected.business, connection, connected.feed_accounts, connected.bank_accounts
        )
        return replace(handover, view=view)

    # Statuses

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
    ) -> tuple[Business, FeedConnection | None, FeedAccountRow | None]:
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
