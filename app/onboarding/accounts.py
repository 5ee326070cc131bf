"""The last step of connect: the chosen bank accounts offered to Codat as source accounts on the connection,
in batches sent at once; accounts Codat already has (a lost answer, or made by hand) are adopted."""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.bankfeed.exceptions import translate_codat_errors
from app.bankfeed.repository import BankAccountRow, FeedAccountRow
from app.codat.client import CodatClient
from app.codat.exceptions import CodatRejected
from app.codat.schemas import (
    SOURCE_ACCOUNT_PROTOTYPES,
    BatchCreateResult,
    SourceAccount,
    SourceAccountPrototype,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 100  # Codat sets no maximum for the batch endpoint; keep each request a sensible size.


def source_account_fields(account: BankAccountRow, country: str) -> dict[str, Any]:
    """A v2 source account prototype's fields for the bank account."""
    routing = None
    if account.routing_number is not None:
        routing = {"bank_code": account.routing_number, "type": "aba" if country == "US" else "rtn"}
    return {
        "id": account.id,
        "account_name": account.name,
        "account_type": account.account_type,
        "account_number": account.account_number,
        "currency": account.currency,
        "balance": account.balance,
        "routing_info": routing,
    }


def source_account_prototypes(
    accounts: Sequence[BankAccountRow], country: str
) -> list[SourceAccountPrototype]:
    """Validated in one call for the batch (a model each cost ~10 µs of Python: 5 ms for 500 accounts)."""
    return SOURCE_ACCOUNT_PROTOTYPES.validate_python([source_account_fields(a, country) for a in accounts])


@dataclass(frozen=True, slots=True)
class Offer:
    """The accounts one request offers: their prototypes (validated ahead of the call: ~1 ms for 100, which
    connect spends while Codat makes the company) and their rows here."""

    prototypes: list[SourceAccountPrototype]
    feed_accounts: list[FeedAccountRow]


def offers(pending: Sequence[tuple[BankAccountRow, FeedAccountRow]], country: str) -> list[Offer]:
    """The accounts to offer, in batches of BATCH_SIZE."""
    chunks = [pending[start : start + BATCH_SIZE] for start in range(0, len(pending), BATCH_SIZE)]
    return [
        Offer(source_account_prototypes([a for a, _ in chunk], country), [f for _, f in chunk])
        for chunk in chunks
    ]


def batch_request_key(feed_accounts: Sequence[FeedAccountRow]) -> str:
    """The same set of pending accounts always gets the same batch key, so a resumed batch replays."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ",".join(sorted(a.request_key for a in feed_accounts))))


def already_exists(result: BatchCreateResult) -> bool:
    return result.status_code in (400, 409) and "exist" in (result.error or "").lower()


class SourceAccounts:
    def __init__(self, codat: CodatClient) -> None:
        self.codat = codat

    async def offer(
        self,
        company_id: str,
        codat_connection_id: str,
        batches: Sequence[Offer],
        offered: list[SourceAccount],
    ) -> None:
        """Send the offers at once (the client keeps within Codat's concurrency per company): one round
        trip for 500 accounts as for 50.

        Codat's answers go to `offered`; every batch is waited for before a failure is raised, so the caller
        records what succeeded, and a retry resumes the rest with the same keys.
        """
        results = await asyncio.gather(
            *(self._offer_batch(company_id, codat_connection_id, offer) for offer in batches),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        offered.extend(a for r in results if not isinstance(r, BaseException) for a in r)
        if failures:
            raise failures[0]

    async def _offer_batch(
        self, company_id: str, codat_connection_id: str, offer: Offer
    ) -> list[SourceAccount]:
        prototypes, feed_accounts = offer.prototypes, offer.feed_accounts
        if len(prototypes) == 1:
            return [await self._offer_one(company_id, codat_connection_id, prototypes[0], feed_accounts[0])]
        with translate_codat_errors("add source accounts"):
            batch = await self.codat.create_source_accounts(
                company_id, codat_connection_id, prototypes, idempotency_key=batch_request_key(feed_accounts)
            )
        return await self._batch_outcome(company_id, codat_connection_id, batch)

    async def _offer_one(
        self,
        company_id: str,
        codat_connection_id: str,
        prototype: SourceAccountPrototype,
        feed_account: FeedAccountRow,
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
