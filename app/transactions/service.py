"""Cleared transactions: accept them into the outbox under the rules of the platform the business feeds, show
where each one is, and record what Codat did with each push (from the worker's polls and from
`bankTransactions.write.*` webhooks).

A request is accepted whole or refused whole: if any new transaction breaks a rule, nothing is queued and
the 422 names every transaction and rule. Ids accepted before are acknowledged as duplicates and skipped,
so a caller may safely send the same transactions again. An account connected before but not writable now
(app/transactions/holds.py) still accepts them: they are held, in order, until the feed is mended.
"""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.exceptions import AccountNotFound
from app.bankfeed.holds import REFUSED_BY_CODAT, hold_of, message, set_write_hold
from app.bankfeed.models import Business
from app.bankfeed.platforms import Platform, by_key
from app.bankfeed.repository import BankFeedRepository
from app.clock import Clock, as_utc
from app.codat.schemas import PushOperation, PushOperationStatus
from app.errors import Conflict, FieldError, InvalidInput
from app.transactions import holds, rules
from app.transactions.models import (
    FAILED,
    UNFINISHED,
    BatchStatus,
    TransactionBatch,
    TransactionStatus,
    TransactionStream,
)
from app.transactions.repository import IdTaken, TransactionRepository
from app.transactions.schemas import (
    HoldOut,
    StatusFilter,
    TransactionIn,
    TransactionOut,
    TransactionsAccepted,
    TransactionsPage,
)

TIMED_OUT = "Codat timed the push out; it is not sent again, since the platform may have written it."


class AccountNotConnected(Conflict):
    code = "account_not_connected"


class TransactionsRefused(InvalidInput):
    code = "transactions_refused"


class TransactionService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    async def accept(
        self, business_id: str, account_id: str, transactions: Sequence[TransactionIn]
    ) -> TransactionsAccepted:
        try:
            async with self.sessions.begin() as session:
                return await self._accept(session, business_id, account_id, transactions)
        except (IntegrityError, IdTaken):
            # Another request took one of these ids for another account at the same moment.
            raise Conflict(
                "A transaction id in this request was just accepted elsewhere; send the request again."
            ) from None

    async def _accept(
        self, session: AsyncSession, business_id: str, account_id: str, transactions: Sequence[TransactionIn]
    ) -> TransactionsAccepted:
        business, platform, feed_start = await _connected_account(session, business_id, account_id)
        now = self.clock.now()
        repo = TransactionRepository(session)
        stream = await repo.lock_stream(business_id, account_id, now)
        owners = await repo.owners_of(business_id, [t.id for t in transactions])
        fresh, duplicates = _split(transactions, owners, account_id)
        local_now = now.astimezone(ZoneInfo(business.time_zone)).replace(tzinfo=None)
        found = rules.refusals(
            fresh,
            platform=platform,
            local_now=local_now,
            newest=stream.newest_date,
            earliest=holds.earliest_date(platform, now, local_now, stream.newest_date, feed_start),
            used_elsewhere={tid: owner for tid, owner in owners.items() if owner != account_id},
        )
        if found:
            fields = [FieldError(field=r.field, reason=r.reason) for r in found]
            raise TransactionsRefused(
                f"{len(found)} rule(s) broken for {platform.label}; nothing was queued.", fields=fields
            )
        if fresh:
            await repo.enqueue([_row(business_id, account_id, t, now) for _, t in fresh])
            stream.newest_date = max(t.date for _, t in fresh)  # the rules let none be older than the last
            # Due now if it was idle (a stream waiting out a back-off keeps its time); counted, so that a
            # worker handing the stream back meanwhile keeps it due (RELEASE).
            stream.next_attempt_at = stream.next_attempt_at or now
            stream.acceptances += 1
            if stream.held_reason is not None:
                # Held as they are queued: the business's version moves, so that its held figures (the
                # console's, made by the events projector) are taken again.
                await BankFeedRepository(session).bump_feed_version(business_id)
        return TransactionsAccepted(
            account_id=account_id, accepted=[t.id for _, t in fresh], duplicates=duplicates
        )

    async def page(
        self, business_id: str, account_id: str, status: StatusFilter | None, after: int, limit: int
    ) -> TransactionsPage:
        async with self.sessions() as session:
            business = await _registered_account(BankFeedRepository(session), business_id, account_id)
            repo = TransactionRepository(session)
            statuses = list(UNFINISHED) if status == "pending" else [status] if status else None
            rows = await repo.page(business_id, account_id, statuses, after, limit)
            counts = await repo.counts(business_id, account_id)
            connection, feed = await holds.current_feed(session, business_id, account_id)
            platform = by_key(connection.platform if connection else None)
            hold = hold_of(connection, feed)
            at_risk_since = holds.unpulled_since(platform, feed)
            stream = await repo.stream(business_id, account_id)
            feed_start = await holds.latest_feed_start(session, business_id, account_id)
        newest = stream.newest_date if stream else None
        now = self.clock.now()
        local_now = now.astimezone(ZoneInfo(business.time_zone)).replace(tzinfo=None)
        accepts_from = (
            holds.earliest_date(platform, now, local_now, newest, feed_start) if feed_start else None
        )
        held = counts.get(TransactionStatus.QUEUED, 0) if hold else 0
        return TransactionsPage(
            account_id=account_id,
            counts={s.value: counts.get(s.value, 0) for s in TransactionStatus} | {"held": held},
            transactions=[_out(row, key, hold, at_risk_since) for row, key in rows],
            next_cursor=str(rows[-1][0].seq) if len(rows) == limit else None,
            held=HoldOut(reason=hold, message=message(hold, connection)) if hold else None,
            accepts_from=accepts_from,
        )


async def _registered_account(repo: BankFeedRepository, business_id: str, account_id: str) -> Business:
    business = await repo.require_business(business_id)
    if await repo.get_bank_account(business_id, account_id) is None:
        raise AccountNotFound("No such bank account for this business.")
    return business


async def _connected_account(
    session: AsyncSession, business_id: str, account_id: str
) -> tuple[Business, Platform, date | None]:
    """The business, the platform it feeds now and the account's feed start date, if the account was ever
    connected: Codat takes transactions only for a connected account, and ones accepted while it is not (any
    more) are held. Until the business connects, its platform is QuickBooks Online."""
    business = await _registered_account(BankFeedRepository(session), business_id, account_id)
    platform = await holds.current_platform(session, business_id)
    feed_start = await holds.latest_feed_start(session, business_id, account_id)
    if feed_start is None:
        connection, feed = await holds.current_feed(session, business_id, account_id)
        status = feed.status if feed and feed.registered else "not_added"
        raise AccountNotConnected(
            f"The account is {status} in {platform.label} (connection "
            f"{connection.status if connection else 'none'}); connect it before sending transactions."
        )
    return business, platform, feed_start


def _split(
    transactions: Sequence[TransactionIn], owners: dict[str, str], account_id: str
) -> tuple[list[tuple[int, TransactionIn]], list[str]]:
    """(new transactions with their index, ids accepted before for this account or earlier in the request)."""
    fresh: list[tuple[int, TransactionIn]] = []
    duplicates: list[str] = []
    seen: set[str] = set()
    for index, transaction in enumerate(transactions):
        if owners.get(transaction.id) == account_id or transaction.id in seen:
            duplicates.append(transaction.id)
        else:
            fresh.append((index, transaction))
        seen.add(transaction.id)
    return fresh, duplicates


def _row(business_id: str, account_id: str, transaction: TransactionIn, now: datetime) -> dict[str, Any]:
    return {
        "business_id": business_id,
        "account_id": account_id,
        "transaction_id": transaction.id,
        "cleared_at": transaction.date,
        "description": transaction.description,
        "amount": transaction.amount,
        "balance": transaction.balance,
        "transaction_type": transaction.transaction_type,
        "status": TransactionStatus.QUEUED.value,
        "accepted_at": now,
    }


def _out(
    row: Any, push_operation_key: str | None, hold: str | None, at_risk_since: datetime | None
) -> TransactionOut:
    held = hold is not None and row.status == TransactionStatus.QUEUED
    at_risk = (
        at_risk_since is not None
        and row.status == TransactionStatus.DELIVERED
        and row.completed_at is not None
        and as_utc(row.completed_at) >= at_risk_since
    )
    return TransactionOut(
        id=row.transaction_id,
        date=row.cleared_at,
        description=row.description,
        amount=row.amount,
        balance=row.balance,
        transaction_type=row.transaction_type,
        status="held" if held else row.status,
        error=row.error,
        warning=holds.UNPULLED_WARNING if at_risk else None,
        push_operation_key=push_operation_key,
        accepted_at=row.accepted_at,
        completed_at=row.completed_at,
    )


# Outcomes of pushes


async def record_outcome(
    repo: TransactionRepository, batch: TransactionBatch, operation: PushOperation, now: datetime
) -> bool:
    """Record a finished push for the batch's transactions, once; False while it is still Pending."""
    status = operation.status
    if status is PushOperationStatus.PENDING:
        return False
    if status is PushOperationStatus.SUCCESS:
        await repo.deliver(batch.id, now)
        return True
    if status is PushOperationStatus.TIMED_OUT:
        await record_failed(repo, batch.id, TIMED_OUT, now)
        return True
    errors = {i.item_id: i.message or "refused" for i in operation.validation_errors if i.item_id}
    if holds.TARGET_ITEMS & errors.keys():
        await hold_batch(repo, batch, errors, operation.error_message, now)
        return True
    await record_refusal(repo, batch, errors, operation.error_message, BatchStatus.FAILED, now)
    return True


async def hold_batch(
    repo: TransactionRepository,
    batch: TransactionBatch,
    errors: dict[str, str],
    summary: str | None,
    now: datetime,
) -> None:
    """Codat refused the push for its target (the account or the connection), not for a transaction: none
    was written, so all of them go back to the queue, held until the feed is mended. A refused account is
    held until Codat reports it connected again; a dead connection holds by its status already."""
    if not await repo.close_batch(batch.id, BatchStatus.REFUSED, summary, now):
        return
    await repo.requeue_rest(batch.id)
    if "accountId" in errors:
        await set_write_hold(repo.session, batch.codat_connection_id, [batch.account_id], REFUSED_BY_CODAT)
        stream = await repo.session.get(TransactionStream, batch.stream_id)
        if stream is not None:
            await BankFeedRepository(repo.session).bump_feed_version(stream.business_id)  # the view shows it


async def record_failed(repo: TransactionRepository, batch_id: int, reason: str, now: datetime) -> None:
    if await repo.close_batch(batch_id, BatchStatus.FAILED, reason, now):
        await repo.settle(batch_id, TransactionStatus.FAILED, now, reason)


# The start of the error of a transaction Codat wrote none of (record_refusal): safe to send again. Any other
# failure (TimedOut, the replay window passed) may have been written, and is never sent again.
NOT_WRITTEN_PREFIX = "Codat refused"


def retryable(status: str, error: str | None) -> bool:
    return status in FAILED and (error or "").startswith(NOT_WRITTEN_PREFIX)


async def record_refusal(
    repo: TransactionRepository,
    batch: TransactionBatch,
    errors: dict[str, str],
    summary: str | None,
    status: BatchStatus,
    now: datetime,
) -> None:
    """Codat wrote none of the batch. Transactions it named get its reason; the others go back to the queue.
    When it named none, we cannot tell which one is at fault, and all of them get the summary."""
    if not await repo.close_batch(batch.id, status, summary, now):
        return
    outcome = TransactionStatus.FAILED if status is BatchStatus.FAILED else TransactionStatus.REFUSED_BY_CODAT
    named = {tid: f"{NOT_WRITTEN_PREFIX} it: {message}" for tid, message in errors.items()}
    if named and await repo.settle_each(batch.id, outcome, named, now):
        await repo.requeue_rest(batch.id)
        return
    await repo.settle(
        batch.id, outcome, now, f"{NOT_WRITTEN_PREFIX} the push: {summary or 'no reason given'}"
    )


async def apply_push_event(
    session: AsyncSession, event_type: str, payload: dict[str, Any], at: datetime
) -> None:
    """A `bankTransactions.write.*` webhook: a success is recorded here; a failure wakes the worker, which
    reads the push operation for Codat's reasons (the webhook carries none)."""
    repo = TransactionRepository(session)
    batch = await repo.pending_batch(str(payload.get("id")))
    if batch is None:
        return  # not recorded as sent yet, or already settled: the worker's poll covers both
    batch_id, stream_id = batch
    # The stream's row first, as the worker locks them (stream, batch, transactions): no deadlock.
    await repo.wake(stream_id, at)
    if event_type.endswith(".successful") and payload.get("status") == PushOperationStatus.SUCCESS:
        await repo.deliver(batch_id, at)
