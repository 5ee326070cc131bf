"""Derive events from committed state: no hook in the code that changes a feed.

Every change the bank-feed view shows bumps the business's `feed_version` (app/bankfeed/repository.py),
whoever made it: a webhook, a refresh, the reconciler, a user, another replica. The projector renders the
view of each business whose version moved past what it last saw, compares it with the snapshot it kept,
and writes the differences as events, audit entries and the business's health (FeedState) in one
transaction. Finished transaction batches are followed by a cursor per account stream. The trade-off: a state
that flips and flips back between two rounds (about a second) is one view, and makes no event.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.trail import SYSTEM, Audit, record_all
from app.bankfeed.holds import BROKEN_CONNECTION
from app.bankfeed.models import Business, FeedConnection
from app.bankfeed.view import render_bank_feed_view
from app.clock import as_utc
from app.db import dialect_insert
from app.events.models import EventSubscription, EventType, FeedState, StreamCursor
from app.events.outbox import emit_all, enabled_subscriptions
from app.transactions.models import (
    FAILED,
    UNFINISHED,
    BankTransaction,
    BatchStatus,
    TransactionBatch,
    TransactionStatus,
    TransactionStream,
)

# The steps of onboarding itself, every platform's (a business stalled in one is counted as stalled).
STATES = cast(Table, FeedState.__table__)
CURSORS = cast(Table, StreamCursor.__table__)
MOVE_CURSOR = (
    update(CURSORS)
    .where(CURSORS.c.stream_id == bindparam("of_stream"))
    .values(last_batch_id=bindparam("to_batch"))
)
MAKE_COUNTS_DUE = (
    update(STATES)
    .where(STATES.c.business_id == bindparam("of_business"), STATES.c.counts_due_at.is_(None))
    .values(counts_due_at=bindparam("due"))
)
# How often, at most, a business's held and failed counts are taken while its batches keep finishing: each
# count reads all of its transactions. The console's figures lag delivery by up to this much.
COUNTS_EVERY = timedelta(seconds=5)
PENDING_ONBOARDING = (
    "connect",
    "authorize",
    "finish_in_quickbooks",
    "map_accounts",
    "enter_code_in_sage",
    "confirm_in_sage",
)
FINISHED_BATCH = (BatchStatus.SUCCESS, BatchStatus.FAILED, BatchStatus.REFUSED)


@dataclass
class Snapshot:
    connection_id: str | None = None
    connection: str | None = None
    action: str = "none"
    accounts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, state: FeedState | None) -> "Snapshot":
        return cls(**json.loads(state.snapshot)) if state else cls()

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @property
    def broken(self) -> bool:
        return self.connection in BROKEN_CONNECTION or "disconnected" in self.accounts.values()


@dataclass(frozen=True)
class Change:
    event_type: EventType
    data: dict[str, Any]
    detail: str


def feed_changes(old: Snapshot, new: Snapshot, action_message: str | None) -> list[Change]:
    """What changed between two views of one feed, as events, in the order a reader would tell them."""
    changes: list[Change] = []
    if new.connection == "Linked" and (old.connection != "Linked" or old.connection_id != new.connection_id):
        changes.append(
            Change(EventType.FEED_CONNECTED, {"connectionId": new.connection_id}, "feed connected")
        )
    for account_id, status in sorted(new.accounts.items()):
        if status in ("connected", "disconnected") and old.accounts.get(account_id) != status:
            event_type = (
                EventType.ACCOUNT_CONNECTED if status == "connected" else EventType.ACCOUNT_DISCONNECTED
            )
            changes.append(Change(event_type, {"accountId": account_id}, f"account {account_id} {status}"))
    if new.action != "none" and new.action != old.action:
        changes.append(
            Change(
                EventType.FEED_NEEDS_ACTION,
                {"action": new.action, "actionMessage": action_message, "connectionStatus": new.connection},
                f"feed needs action: {new.action}",
            )
        )
    return changes


class Projector:
    def __init__(
        self, stalled_after: timedelta, batch: int = 200, counts_every: timedelta = COUNTS_EVERY
    ) -> None:
        self.stalled_after = stalled_after
        self.batch = batch
        self.counts_every = counts_every

    async def changed_businesses(self, session: AsyncSession) -> Sequence[str]:
        query = (
            select(Business.id)
            .outerjoin(FeedState, FeedState.business_id == Business.id)
            .where(or_(FeedState.business_id.is_(None), FeedState.feed_version != Business.feed_version))
            .limit(self.batch)
        )
        return (await session.scalars(query)).all()

    async def project_business(self, session: AsyncSession, business_id: str, now: datetime) -> None:
        """One business's view against its snapshot: events, audit, health. Locks its FeedState row, so two
        workers never emit the same change twice (a first insert races on the primary key instead)."""
        state = await session.get(FeedState, business_id, with_for_update=True)
        version = await session.scalar(select(Business.feed_version).where(Business.id == business_id))
        if version is None or (state is not None and state.feed_version == version):
            return
        view = await render_bank_feed_view(session, business_id)
        connection = await session.scalar(
            select(FeedConnection).where(FeedConnection.business_id == business_id, FeedConnection.is_current)
        )
        old = Snapshot.load(state)
        new = Snapshot(
            connection_id=view.connection.connection_id if view.connection else None,
            connection=view.connection.status if view.connection else None,
            action=view.action,
            accounts={a.account_id: a.status for a in view.accounts},
        )
        subscriptions = await enabled_subscriptions(session)
        for change in feed_changes(old, new, view.action_message):
            await self._emit(session, subscriptions, business_id, change, now)
        held, failed = (await _transaction_counts(session, [business_id])).get(business_id, (0, 0))
        if new.broken and not old.broken and held:
            change = Change(EventType.TRANSACTIONS_HELD, {"count": held}, f"{held} transactions held")
            await self._emit(session, subscriptions, business_id, change, now)
        if state is None:
            state = FeedState(business_id=business_id, stalled=False)
            session.add(state)
        pending_since = connection.created_at if connection is not None else None
        state.stalled = bool(
            state.stalled
            and new.action in PENDING_ONBOARDING
            and state.connection_created_at == pending_since
        )
        state.feed_version = version
        state.action = new.action
        state.connection_status = new.connection
        state.connection_created_at = pending_since
        state.needs_action = new.action != "none"
        state.broken = new.broken
        _set_counts(state, (held, failed), now)
        state.snapshot = new.dump()
        state.updated_at = now

    async def finished_batches(self, session: AsyncSession) -> Sequence[tuple[TransactionBatch, str]]:
        """Batches finished since each stream's cursor, oldest first, with their business."""
        cursor = func.coalesce(StreamCursor.last_batch_id, 0)
        query = (
            select(TransactionBatch, TransactionStream.business_id)
            .join(TransactionStream, TransactionStream.id == TransactionBatch.stream_id)
            .outerjoin(StreamCursor, StreamCursor.stream_id == TransactionStream.id)
            .where(TransactionBatch.status.in_(FINISHED_BATCH), TransactionBatch.id > cursor)
            .order_by(TransactionBatch.id)
            .limit(self.batch)
        )
        return [(batch, business_id) for batch, business_id in (await session.execute(query)).all()]

    async def project_batches(
        self, session: AsyncSession, batches: Sequence[tuple[TransactionBatch, str]], now: datetime
    ) -> None:
        """Finished pushes (oldest first, with their business) as events, `transactions.delivered` or
        `transactions.failed`, one transaction for all of them: a statement serves them all rather than a
        statement each (a batch of 100 transactions cost its own ten statements).

        What is read comes first, the events made of it too, and the writes last, quickly: from its first
        write (or lock) to its commit, a transaction holds back the pruning of every row version deleted
        meanwhile, and the workers' HOT updates of bank_transaction need it (their new versions must find
        room on the page). A finished batch's rows no longer change, so reading them first is safe."""
        rows = await _batch_rows(session, [batch for batch, _ in batches])
        subscriptions = await enabled_subscriptions(session)
        made = {batch.id: _batch_change(batch, rows.get(batch.id, [])) for batch, _ in batches}
        businesses = sorted({business_id for _, business_id in batches})
        counted = select(STATES.c.business_id, STATES.c.counted_at).where(
            STATES.c.business_id.in_(businesses), STATES.c.counts_due_at.is_(None)
        )
        counts_current = dict((await session.execute(counted)).all())  # when not due already: taken then
        # Writes: each stream's cursor, locked; the events of the batches not yet projected; counts due.
        cursors = await self._lock_cursors(session, sorted({batch.stream_id for batch, _ in batches}))
        # A batch another worker projected meanwhile is skipped; a stream's batches finish in id order.
        due = [(batch, business) for batch, business in batches if batch.id > cursors[batch.stream_id]]
        if not due:
            return
        moved = {batch.stream_id: batch.id for batch, _ in due}  # each stream's last, as they are in order
        await session.execute(MOVE_CURSOR, [{"of_stream": s, "to_batch": b} for s, b in moved.items()])
        changes = [(business, change) for batch, business in due if (change := made[batch.id]) is not None]
        await self._emit_all(session, subscriptions, changes, now)
        counts_due = [
            {"of_business": business_id, "due": self._counts_due(counts_current[business_id], now)}
            for business_id in sorted({business for _, business in due} & counts_current.keys())
        ]
        if counts_due:
            # Only while still current: a count meanwhile made them due or took them (then due a bit early).
            await session.execute(MAKE_COUNTS_DUE, counts_due)

    async def _lock_cursors(self, session: AsyncSession, streams: Sequence[int]) -> dict[int, int]:
        """Each stream's last projected batch, its cursor row made if need be and locked: one statement (an
        upsert that changes nothing locks the row it finds). Two workers take them in stream order, so
        neither waits on the other's next one; a second one making a cursor waits for the first to commit."""
        start = [{"stream_id": stream_id, "last_batch_id": 0} for stream_id in streams]
        upsert = dialect_insert(session)(CURSORS).values(start)
        locked = upsert.on_conflict_do_update(
            index_elements=[CURSORS.c.stream_id], set_={"last_batch_id": CURSORS.c.last_batch_id}
        ).returning(CURSORS.c.stream_id, CURSORS.c.last_batch_id)
        return {stream_id: last for stream_id, last in (await session.execute(locked)).all()}

    def _counts_due(self, counted_at: datetime | None, now: datetime) -> datetime:
        """When counts last taken at `counted_at` are next to be taken: not sooner than counts_every after."""
        return now if counted_at is None else max(now, as_utc(counted_at) + self.counts_every)

    async def count_due(self, session: AsyncSession, now: datetime) -> int:
        """Take the held and failed counts of the businesses whose counts are due; how many. Rows another
        worker has locked (counting, or projecting) are left to it."""
        query = (
            select(FeedState)
            .where(FeedState.counts_due_at <= now)
            .order_by(FeedState.business_id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
        )
        states = (await session.scalars(query)).all()
        if states:
            counts = await _transaction_counts(session, [state.business_id for state in states])
            for state in states:
                _set_counts(state, counts.get(state.business_id, (0, 0)), now)
        return len(states)

    async def stalled(self, session: AsyncSession, now: datetime) -> Sequence[str]:
        """Businesses whose onboarding has been pending longer than the setting, not yet reported."""
        query = (
            select(FeedState.business_id)
            .where(
                FeedState.action.in_(PENDING_ONBOARDING),
                FeedState.stalled.is_(False),
                FeedState.connection_created_at < now - self.stalled_after,
            )
            .limit(self.batch)
        )
        return (await session.scalars(query)).all()

    async def project_stalled(self, session: AsyncSession, business_id: str, now: datetime) -> None:
        state = await session.get(FeedState, business_id, with_for_update=True)
        if state is None or state.stalled or state.action not in PENDING_ONBOARDING:
            return
        state.stalled = True
        since = state.connection_created_at
        change = Change(
            EventType.ONBOARDING_STALLED,
            {"action": state.action, "pendingSince": since.isoformat() if since else None},
            f"onboarding stalled at {state.action}",
        )
        await self._emit(session, await enabled_subscriptions(session), business_id, change, now)

    async def _emit(
        self,
        session: AsyncSession,
        subscriptions: Sequence[EventSubscription],
        business_id: str,
        change: Change,
        now: datetime,
    ) -> None:
        await self._emit_all(session, subscriptions, [(business_id, change)], now)

    async def _emit_all(
        self,
        session: AsyncSession,
        subscriptions: Sequence[EventSubscription],
        changes: Sequence[tuple[str, Change]],
        now: datetime,
    ) -> None:
        """The changes as events, in this order, each with its audit entry."""
        wanted = [(business_id, change.event_type.value, change.data) for business_id, change in changes]
        events = await emit_all(session, subscriptions, wanted, now)
        entries = [
            Audit(business_id, SYSTEM, change.event_type, "emitted", f"{change.detail} ({event.id})")
            for (business_id, change), event in zip(changes, events, strict=True)
        ]
        await record_all(session, entries, now)


def _batch_change(batch: TransactionBatch, rows: Sequence[Any]) -> Change | None:
    account = {"accountId": batch.account_id, "pushOperationKey": batch.push_operation_key}
    if batch.status == BatchStatus.SUCCESS:
        ids = [row.transaction_id for row in rows if row.status == TransactionStatus.DELIVERED]
        return Change(
            EventType.TRANSACTIONS_DELIVERED,
            {**account, "count": len(ids), "transactionIds": ids},
            f"{len(ids)} transactions delivered to {batch.account_id}",
        )
    failed = [{"id": row.transaction_id, "error": row.error} for row in rows if row.status in FAILED]
    if not failed:
        return None  # all were queued again: they go out in a later push
    return Change(
        EventType.TRANSACTIONS_FAILED,
        {**account, "count": len(failed), "transactions": failed},
        f"{len(failed)} transactions failed for {batch.account_id}: {batch.error or 'see each'}",
    )


async def _batch_rows(session: AsyncSession, batches: Sequence[TransactionBatch]) -> dict[int, list[Any]]:
    """Each batch's transactions, in order: found by the primary key within its seq range (batch_id is not
    indexed)."""
    ranges = [
        (BankTransaction.seq.between(batch.first_seq, batch.last_seq))
        & (BankTransaction.batch_id == batch.id)
        for batch in batches
        if batch.first_seq is not None and batch.last_seq is not None
    ]
    rows: dict[int, list[Any]] = {}
    if not ranges:
        return rows
    query = (
        select(
            BankTransaction.batch_id,
            BankTransaction.transaction_id,
            BankTransaction.status,
            BankTransaction.error,
        )
        .where(or_(*ranges))
        .order_by(BankTransaction.seq)
    )
    for row in (await session.execute(query)).all():
        rows.setdefault(row.batch_id, []).append(row)
    return rows


def _set_counts(state: FeedState, counts: tuple[int, int], now: datetime) -> None:
    state.held_count, state.failed_count = counts
    state.counted_at, state.counts_due_at = now, None


async def _transaction_counts(session: AsyncSession, businesses: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(unfinished, failed) transactions of each of these businesses: over all of their rows (a status is not
    indexed, so that its updates stay HOT), hence taken when due rather than for every batch."""
    query = (
        select(BankTransaction.business_id, BankTransaction.status, func.count())
        .where(BankTransaction.business_id.in_(businesses))
        .group_by(BankTransaction.business_id, BankTransaction.status)
    )
    counts: dict[str, dict[str, int]] = {}
    for business_id, status, n in (await session.execute(query)).all():
        counts.setdefault(business_id, {})[status] = n
    return {
        business_id: (sum(by.get(s, 0) for s in UNFINISHED), sum(by.get(s, 0) for s in FAILED))
        for business_id, by in counts.items()
    }
