"""Mapping through Codat (Xero, NetSuite, FreeAgent, Exact): the targets Codat offers each account on the
feed, and the choice of one, checked against those offers before anything is sent."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.changes import ChangeFeed
from app.bankfeed.exceptions import AccountNotFound, ConnectionGone, translate_codat_errors
from app.bankfeed.models import FeedConnection
from app.bankfeed.platforms import Platform, by_key
from app.bankfeed.repository import BankAccountRow, BankFeedRepository, new_request_key
from app.bankfeed.sync import FeedSync
from app.codat.client import CodatClient
from app.codat.exceptions import CodatRejected
from app.codat.schemas import BankFeedMapping
from app.errors import InvalidInput
from app.onboarding.exceptions import NotAuthorized

log = logging.getLogger(__name__)

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

    account: BankAccountRow
    mapping: BankFeedMapping


class Mappings:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        codat: CodatClient,
        sync: FeedSync,
        changes: ChangeFeed,
    ) -> None:
        self.sessions = sessions
        self.codat = codat
        self.sync = sync
        self.changes = changes

    async def read(self, company_id: str, connection: FeedConnection) -> list[AccountMapping]:
        """Each account on the feed with Codat's mapping of it; refused until the SMB has authorized."""
        with translate_codat_errors("read the mapping"):
            mappings = await self.codat.get_bank_account_mapping(company_id, made_at_codat(connection))
        async with self.sessions() as session:
            repo = BankFeedRepository(session)
            offered = {f.account_id for f in await repo.feed_accounts(connection.id) if f.registered}
            registered = await repo.bank_accounts(connection.business_id)
            accounts = {a.id: a for a in registered if a.id in offered}
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
                await self.sync.refresh_connection(company_id, connection)
        if not authorized:
            raise NotAuthorized(
                f"Sign in to {by_key(connection.platform).label} first: GET /v1/bank-feed/link; the accounts "
                "to choose from are known once the connection is allowed."
            )
        return ours

    async def map_account(
        self,
        company_id: str,
        connection: FeedConnection,
        account_id: str,
        target_id: str | None,
        feed_start: date | None,
    ) -> None:
        """Map an account to one of the targets Codat offers it (None: a new account in the books).

        The target is checked against the options first: nothing is sent to Codat for one it would refuse.
        """
        offered = next(
            (m for m in await self.read(company_id, connection) if m.account.id == account_id), None
        )
        if offered is None:
            raise AccountNotFound(f"No bank account {account_id!r} is on this business's feed.")
        platform = by_key(connection.platform)
        target_name = chosen_target(platform, offered, target_id)
        if target_id is None and platform.company_information:
            await self._require_new_account_currency(company_id, connection, platform, offered.account)
        with translate_codat_errors("map account"), mapping_refusals(platform):
            result = await self.codat.create_bank_account_mapping(
                company_id,
                made_at_codat(connection),
                account_id,
                target_id,
                feed_start,
                idempotency_key=new_request_key(),
            )
        await self._record(
            connection, account_id, result.target_account_id or target_id, target_name, result.status
        )

    async def _require_new_account_currency(
        self, company_id: str, connection: FeedConnection, platform: Platform, account: BankAccountRow
    ) -> None:
        """A new account in the books is made in the account's currency, which books without multicurrency
        refuse unless it is their base currency (docs.codat.io: bank-feeds/create-account). Where the
        platform tells its books' currencies (Xero, NetSuite), refuse up front: nothing is sent."""
        with translate_codat_errors("read the company information"):
            books = await self.codat.get_company_information(company_id, made_at_codat(connection))
        if books.multicurrency_enabled or books.base_currency.upper() == account.currency:
            return
        raise InvalidInput.for_field(
            "accountId",
            f"{platform.label} keeps {books.company_name}'s books in {books.base_currency} without "
            f"multicurrency, so it cannot make a new {account.currency} account: choose one of the "
            f"account's options, or turn multicurrency on in {platform.label}",
        )

    async def _record(
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


def made_at_codat(connection: FeedConnection) -> str:
    """Codat's id of a connection the caller knows was made there."""
    assert connection.codat_connection_id is not None
    return connection.codat_connection_id


def chosen_target(platform: Platform, offered: AccountMapping, target_id: str | None) -> str | None:
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
def mapping_refusals(platform: Platform) -> Iterator[None]:
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
