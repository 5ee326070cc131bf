"""All SQL of the transactions outbox. Methods take domain arguments; the caller owns the transaction.

Two kinds of lock, both portable: acceptance takes the account's stream row by writing to it first (a row
lock on Postgres, the write lock on SQLite) so that "not older than the newest" holds under concurrency; a
worker holds a stream by a lease (claimed with ``FOR UPDATE SKIP LOCKED`` on Postgres) and proves it still
holds it with every write (``lease_owner`` fences a worker whose lease another took over). Every
transaction that writes takes its rows in one order, stream, then batch, then transactions, so two of them
never wait on each other.
"""

import functools
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, cast

import asyncpg
from sqlalchemy import (
    CTE,
    BindParameter,
    ColumnElement,
    FromClause,
    Integer,
    ScalarSelect,
    Select,
    String,
    Table,
    TextClause,
    all_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Update

from app.bankfeed.holds import hold_of
from app.bankfeed.models import Business, FeedAccount, FeedConnection
from app.bankfeed.repository import BankFeedRepository
from app.db import insert_ignoring_conflicts, rows_changed
from app.rawpool import RawPool
from app.transactions.models import (
    FAILED,
    OPEN_BATCH,
    BankTransaction,
    BatchStatus,
    TransactionBatch,
    TransactionStatus,
    TransactionStream,
)


class IdTaken(Exception):
    """Another request took one of these transaction ids at the same moment (the unique key refused it)."""


class LeaseLost(Exception):
    """Another worker took this stream over (our lease expired): stop touching it."""


# What a push sends of each transaction, with what the cut needs (seq, cleared_at).
WIRE_COLUMNS = (
    BankTransaction.seq,
    BankTransaction.transaction_id,
    BankTransaction.cleared_at,
    BankTransaction.description,
    BankTransaction.amount,
    BankTransaction.balance,
    BankTransaction.transaction_type,
)


class WireRow(NamedTuple):
    """A row of WIRE_COLUMNS."""

    seq: int
    transaction_id: str
    cleared_at: datetime
    description: str
    amount: Decimal
    balance: Decimal
    transaction_type: str


def _typed(name: str, like: ColumnElement[Any]) -> BindParameter[Any]:
    """A parameter of the column's type (inside a tuple it would get none: SQLite compares dates as text)."""
    return bindparam(name, type_=like.type)


# The worker's statements on every batch, built once, on the tables rather than the mapped classes: an ORM
# UPDATE is planned (and its session synchronised) on every call, several times the cost of the statement.
STREAMS = cast(Table, TransactionStream.__table__)
BATCHES = cast(Table, TransactionBatch.__table__)
ROWS = cast(Table, BankTransaction.__table__)
# Parameters are never named after a column of a table a statement updates: SQLAlchemy would add it to the
# UPDATE's SET (e.g. `stream_id` to transaction_batch's, where a batch is closed after the fence).
OURS = (STREAMS.c.id == bindparam("of_stream"), STREAMS.c.lease_owner == bindparam("owner"))
RENEW = update(STREAMS).where(*OURS).values(lease_until=bindparam("until"))
# Handed back due at `at`; or idle (NULL: not claimed until the next acceptance) when the acceptances are
# still `idle_if`, the count read before the cut that found the queue's end (NULL never equals it).
RELEASE = (
    update(STREAMS)
    .where(*OURS)
    .values(
        lease_owner=None,
        lease_until=None,
        next_attempt_at=case(
            (STREAMS.c.acceptances == bindparam("idle_if", type_=Integer), None),
            else_=_typed("at", STREAMS.c.next_attempt_at),
        ),
        waits=bindparam("wait_count"),
    )
)
# An open batch, as plain parameters: an IN list of constants is rendered into the SQL again on every run.
OPEN = or_(*(BATCHES.c.status == status.value for status in OPEN_BATCH))
MOVE_CUT = (
    update(STREAMS)
    .where(STREAMS.c.id == bindparam("stream_id"))
    .values(cut_cleared_at=bindparam("to_at"), cut_seq=bindparam("to_seq"))
)
NEW_BATCH = insert(BATCHES).returning(BATCHES.c.id)
# What a cut sets of a new batch beside its stream, status and seq range.
NEW_BATCH_VALUES = (
    "idempotency_key",
    "codat_company_id",
    "codat_connection_id",
    "account_id",
    "created_at",
)
# The rows of one account between the cut and the last row of the new batch: the rows just read, found again
# through the queue index (the stream's row lock keeps any other from being accepted meanwhile).
IN_CUT = (
    ROWS.c.account_id == bindparam("of_account"),
    ROWS.c.business_id == bindparam("of_business"),
    tuple_(ROWS.c.cleared_at, ROWS.c.seq)
    > tuple_(_typed("cut_at", ROWS.c.cleared_at), _typed("cut_seq", ROWS.c.seq)),
    tuple_(ROWS.c.cleared_at, ROWS.c.seq)
    <= tuple_(_typed("last_at", ROWS.c.cleared_at), _typed("last_seq", ROWS.c.seq)),
    ROWS.c.status == TransactionStatus.QUEUED.value,
)
MARK_SENDING = (
    update(ROWS).where(*IN_CUT).values(status=TransactionStatus.SENDING.value, batch_id=bindparam("batch"))
)
CLOSE_BATCH = (
    update(BATCHES)
    .where(BATCHES.c.id == bindparam("batch"), OPEN)
    .values(
        status=bindparam("new_status"),
        error=bindparam("new_error"),
        completed_at=bindparam("now"),
        push_operation_key=func.coalesce(bindparam("key", type_=String(36)), BATCHES.c.push_operation_key),
    )
)
# A batch's rows, through the primary key within its seq range (batch_id is not indexed).
OF_BATCH = (
    ROWS.c.seq >= select(BATCHES.c.first_seq).where(BATCHES.c.id == bindparam("batch")).scalar_subquery(),
    ROWS.c.seq <= select(BATCHES.c.last_seq).where(BATCHES.c.id == bindparam("batch")).scalar_subquery(),
    ROWS.c.batch_id == bindparam("batch"),
    ROWS.c.status == TransactionStatus.SENDING.value,
)
SETTLE = (
    update(ROWS)
    .where(*OF_BATCH)
    .values(status=bindparam("row_status"), error=bindparam("row_error"), completed_at=bindparam("now"))
)

# What a push's webhook looks up (the BFF, for every push): built once, as columns rather than an entity.
PENDING_BATCH = select(BATCHES.c.id, BATCHES.c.stream_id).where(
    BATCHES.c.push_operation_key == bindparam("key"), BATCHES.c.status == BatchStatus.PENDING.value
)

# The stream's cut, the account's hold, the Codat target and the open batch: one query, read as columns.
CONNECTIONS = cast(Table, FeedConnection.__table__)
FEEDS = cast(Table, FeedAccount.__table__)
BUSINESSES = cast(Table, Business.__table__)
BATCH_COLUMNS = [column.key for column in BATCHES.columns]


def _with_state(streams: FromClause) -> Select[Any]:
    """Each of these streams' state: its cut, the account's hold, the Codat target and its open batch (the
    earliest, should there be two: one row a stream whatever happens)."""
    others = BATCHES.alias("other_batch")
    earliest_open = (
        select(func.min(others.c.id))
        .where(others.c.stream_id == streams.c.id, or_(*(others.c.status == s.value for s in OPEN_BATCH)))
        .scalar_subquery()
    )
    return select(
        streams.c.cut_cleared_at,
        streams.c.cut_seq,
        streams.c.acceptances,
        BUSINESSES.c.codat_company_id,
        CONNECTIONS.c.id.label("connection_row"),
        CONNECTIONS.c.codat_connection_id,
        CONNECTIONS.c.status.label("connection_status"),
        FEEDS.c.account_id.label("feed_row"),
        FEEDS.c.registered,
        FEEDS.c.status.label("feed_status"),
        FEEDS.c.write_hold,
        *(BATCHES.c[key].label(f"batch_{key}") for key in BATCH_COLUMNS),
    ).select_from(
        streams.outerjoin(BUSINESSES, BUSINESSES.c.id == streams.c.business_id)
        .outerjoin(
            CONNECTIONS,
            (CONNECTIONS.c.business_id == streams.c.business_id) & CONNECTIONS.c.is_current.is_(True),
        )
        .outerjoin(
            FEEDS, (FEEDS.c.connection_id == CONNECTIONS.c.id) & (FEEDS.c.account_id == streams.c.account_id)
        )
        .outerjoin(BATCHES, BATCHES.c.id == earliest_open)
    )


STATE = _with_state(STREAMS).where(STREAMS.c.id == bindparam("of_stream"))


@functools.cache
def queued_after_cut(size: int) -> Select[Any]:
    """The account's next `size` queued rows after the cut, earliest first (one statement per batch size)."""
    return (
        select(*(ROWS.c[column.key] for column in WIRE_COLUMNS))
        .where(*IN_CUT[:2], IN_CUT[2], IN_CUT[4])
        .order_by(ROWS.c.cleared_at, ROWS.c.seq)
        .limit(size)
    )


# Postgres: the worker's steps on every batch as one statement each (data-modifying CTEs), run outside a
# transaction: one round trip instead of BEGIN, four to six statements and COMMIT. Each starts with the fence.
# Its reads see the database as the statement began, even after waiting on the stream's row lock: safe, since
# only the task holding the lease cuts or settles the stream's batches, a worker runs one task per stream
# (claim's `busy`), and any other worker's task fails the fence (the lease_owner check is made on the
# row as it is after the wait). SQLite keeps the statements one by one, in a transaction.
def _fenced(fence: Update) -> CTE:
    return fence.returning(STREAMS.c.id).cte("fence")


def _count(cte: CTE) -> ScalarSelect[int]:
    return select(func.count()).select_from(cte).scalar_subquery()


FENCED_STATE = STATE.where(exists(select(_fenced(RENEW).c.id)))


def _delivered(fence: Update) -> Select[int, int]:
    """The fence, the batch closed as delivered, its rows settled: (streams fenced, rows settled)."""
    fenced = _fenced(fence)
    closed = CLOSE_BATCH.where(exists(select(fenced.c.id))).returning(BATCHES.c.id).cte("closed")
    settled = SETTLE.where(exists(select(closed.c.id))).returning(ROWS.c.seq).cte("settled")
    return select(_count(fenced), _count(settled))


DELIVERED = {False: _delivered(RENEW), True: _delivered(RELEASE)}  # by whether it hands the stream back
STATE_KEYS = [str(column.key) for column in FENCED_STATE.selected_columns]

# Claim (Postgres): as claim's ORM statement, built once, with the busy streams as one array parameter.
CLAIMABLE = or_(STREAMS.c.lease_until.is_(None), STREAMS.c.lease_until < bindparam("now"))
# The due streams to take, locked, each with the version of its row it locked (`xmin`: the transaction that
# wrote it; as locked, the latest, whatever the statement's snapshot saw).
CANDIDATES = (
    select(STREAMS.c.id, literal_column("transaction_stream.xmin").label("locked_version"))
    .where(
        CLAIMABLE,
        STREAMS.c.next_attempt_at <= bindparam("now"),
        STREAMS.c.id != all_(bindparam("busy", type_=postgresql.ARRAY(Integer))),
    )
    .order_by(STREAMS.c.next_attempt_at)
    .limit(bindparam("slots"))
    .with_for_update(skip_locked=True)
    .cte("candidates")
)
CLAIM = (
    update(STREAMS)
    .where(STREAMS.c.id == CANDIDATES.c.id, CLAIMABLE)
    .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"))
    .returning(*STREAMS.c, CANDIDATES.c.locked_version)
    .cte("claimed")
)
# Each claimed stream with its state, read in the claim, so that its first step need not read it behind a
# fence of its own (in the 1,000 x 100 shape, one statement fewer a push). Only when the row the claim
# locked is the one its reads saw (`unmoved`): those reads see the database as the statement began, and a
# worker whose lease lapsed could commit a cut after that, before the claim locks the row (its fence passes
# while it is still the owner; the lease it sets may have lapsed again if it stalled). The state would miss
# that batch, and the first step cut another beside it. Every write to a stream's batches moves its row, so
# a stream whose row moved meanwhile (rare) is read behind the first step's fence, after the claim commits.
BEFORE_CLAIM = STREAMS.alias("before_claim")  # the row as the statement began
CLAIMED = (
    _with_state(CLAIM)
    .add_columns(
        *(CLAIM.c[key] for key in STREAMS.c.keys()),
        (literal_column("before_claim.xmin") == CLAIM.c.locked_version).label("unmoved"),
    )
    .join(BEFORE_CLAIM, BEFORE_CLAIM.c.id == CLAIM.c.id)
)  # the state's columns (STATE_KEYS), then the stream's (CLAIM_KEYS), then `unmoved`
CLAIM_KEYS = [column.key for column in STREAMS.c]


# The next `:size` queued rows after the cut, with the batch made of them (NULL: the fence failed) and how
# many were marked. The fence moves the cut to the last of them; the batch is inserted and its rows marked
# only when it passed. Written as SQL: the same statement built with SQLAlchemy's CTEs lost one of its
# constants' parameters from the compiled cache.
CUT = text(
    f"""
WITH queued AS (
    SELECT {", ".join(column.key for column in WIRE_COLUMNS)}
    FROM bank_transaction
    WHERE account_id = :of_account AND business_id = :of_business
        AND (cleared_at, seq) > (CAST(:cut_at AS timestamp), CAST(:cut_seq AS bigint))
        AND status = '{TransactionStatus.QUEUED.value}'
    ORDER BY cleared_at, seq
    LIMIT :size
), last AS (
    SELECT cleared_at, seq FROM queued ORDER BY cleared_at DESC, seq DESC LIMIT 1
), fence AS (
    UPDATE transaction_stream
    SET lease_until = :until, cut_cleared_at = last.cleared_at, cut_seq = last.seq
    FROM last
    WHERE id = :of_stream AND lease_owner = :owner
    RETURNING id
), batch AS (
    INSERT INTO transaction_batch (stream_id, status, {", ".join(NEW_BATCH_VALUES)}, first_seq, last_seq)
    SELECT id, '{BatchStatus.SENDING.value}', CAST(:idempotency_key AS varchar),
        CAST(:codat_company_id AS varchar), CAST(:codat_connection_id AS varchar),
        CAST(:account_id AS varchar), CAST(:created_at AS timestamptz),
        (SELECT min(seq) FROM queued), (SELECT max(seq) FROM queued)
    FROM fence
    RETURNING id
), marked AS (
    UPDATE bank_transaction SET status = '{TransactionStatus.SENDING.value}', batch_id = batch.id
    FROM batch
    WHERE bank_transaction.seq IN (SELECT seq FROM queued)
        AND bank_transaction.status = '{TransactionStatus.QUEUED.value}'
    RETURNING bank_transaction.seq
)
SELECT queued.*, (SELECT id FROM batch) AS batch_id, (SELECT count(*) FROM marked) AS marked
FROM queued ORDER BY cleared_at, seq
"""
)


class RawStatement:
    """A statement compiled once for asyncpg: its SQL, with `$n` for the parameter named `names[n - 1]`, and
    the statement's own constants (e.g. an open batch's statuses). Run on a RawPool, a statement costs the
    worker ~0.07 ms of CPU; through SQLAlchemy's session ~0.5 ms (measured): most of what a push's
    statements cost the worker."""

    def __init__(self, statement: Select[*tuple[Any, ...]] | TextClause | Update) -> None:
        compiled = statement.compile(dialect=PGDialect_asyncpg())  # type: ignore[no-untyped-call]
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or ())
        self.constants = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [params[name] if name in params else self.constants[name] for name in self.names]


_raw = functools.cache(RawStatement)


@dataclass(frozen=True)
class Fence:
    """How a worker's write proves the stream is still its own (LeaseLost otherwise): its lease renewed until
    `until`, or with `hand_back` the stream handed back (RELEASE: due now, or idle if the acceptances are
    still `idle_if`)."""

    stream_id: int
    owner: str
    until: datetime
    hand_back: bool = False
    idle_if: int | None = None

    def params(self, now: datetime) -> dict[str, Any]:
        lease = {"of_stream": self.stream_id, "owner": self.owner}
        if self.hand_back:
            return {**lease, "at": now, "wait_count": 0, "idle_if": self.idle_if}
        return {**lease, "until": self.until}


@dataclass(frozen=True)
class StreamState:
    """What a worker's next step on a stream depends on, read in one query."""

    cut: tuple[datetime, int]
    acceptances: int  # read before the queue: a cut that finds its end finds it as of this count
    open_batch: TransactionBatch | None
    hold: str | None  # why Codat would refuse the account's writes now (app/transactions/holds.py)
    target: tuple[str, str] | None  # the Codat company and connection, when both exist


class Claimed(NamedTuple):
    """A stream just leased, with its state when the claim read it (Postgres) rather than the first step."""

    stream: TransactionStream
    state: StreamState | None


class TransactionRepository:
    def __init__(self, session: AsyncSession, raw: RawPool | None = None) -> None:
        """`raw` (Postgres only): where a worker's steps that are one statement on their own (the claim, the
        fenced state, the cut, a delivered push) run, outside any transaction; without it, on the session."""
        self.session = session
        self.raw = raw

    # Acceptance

    async def lock_stream(self, business_id: str, account_id: str, now: datetime) -> TransactionStream:
        row = {"business_id": business_id, "account_id": account_id, "next_attempt_at": now, "waits": 0}
        await self.session.execute(
            insert_ignoring_conflicts(self.session, TransactionStream, [row], ["business_id", "account_id"])
        )
        where = (TransactionStream.business_id == business_id, TransactionStream.account_id == account_id)
        # A write first: it locks the row until commit, so concurrent requests for one account go one by one.
        await self.session.execute(
            update(TransactionStream).where(*where).values(waits=TransactionStream.waits)
        )
        stream = await self.session.scalar(select(TransactionStream).where(*where))
        assert stream is not None
        return stream

    async def owners_of(self, business_id: str, transaction_ids: Sequence[str]) -> dict[str, str]:
        """Which account each of these ids was accepted for, if any: one unique-key lookup per id."""
        query = select(BankTransaction.transaction_id, BankTransaction.account_id).where(
            BankTransaction.business_id == business_id
        )
        if self.session.get_bind().dialect.name == "postgresql":
            # A join to the ids rather than `IN (1,000 parameters)`: Postgres may plan such an IN as a filter
            # over all of the business's rows, unhashed when the list is parameters (over 10 s at 50,000).
            array = bindparam("ids", list(transaction_ids), type_=postgresql.ARRAY(String))
            ids = func.unnest(array).table_valued("id").render_derived(name="ids")
            query = query.join(ids, BankTransaction.transaction_id == ids.c.id)
        else:
            query = query.where(BankTransaction.transaction_id.in_(transaction_ids))
        return {tid: account for tid, account in (await self.session.execute(query)).all()}

    async def enqueue(self, rows: list[dict[str, object]]) -> None:
        """All rows in one COPY on Postgres (its fastest way in; executemany sends a statement per row). On
        SQLite, executemany: one prepared statement stepped in C, cheaper than compiling a 1,000-row
        INSERT while holding the database's write lock. Raises IdTaken on a duplicate id (Postgres)."""
        if self.session.get_bind().dialect.name != "postgresql":
            await self.session.execute(insert(BankTransaction), rows)
            return
        asyncpg_connection = (await (await self.session.connection()).get_raw_connection()).driver_connection
        assert asyncpg_connection is not None
        columns = list(rows[0])
        try:
            await asyncpg_connection.copy_records_to_table(
                BankTransaction.__tablename__,
                records=[tuple(row[c] for c in columns) for row in rows],
                columns=columns,
            )
        except asyncpg.UniqueViolationError:
            raise IdTaken() from None

    # Reading

    async def stream(self, business_id: str, account_id: str) -> TransactionStream | None:
        return await self.session.scalar(
            select(TransactionStream).where(
                TransactionStream.business_id == business_id, TransactionStream.account_id == account_id
            )
        )

    async def held_count(self) -> int:
        """Transactions waiting on streams the workers last found held (app/transactions/holds.py)."""
        query = (
            select(func.count())
            .select_from(BankTransaction)
            .join(
                TransactionStream,
                (TransactionStream.business_id == BankTransaction.business_id)
                & (TransactionStream.account_id == BankTransaction.account_id),
            )
            .where(TransactionStream.held_reason.is_not(None))
            .where(BankTransaction.status == TransactionStatus.QUEUED)
        )
        return int(await self.session.scalar(query) or 0)

    async def page(
        self, business_id: str, account_id: str, statuses: Sequence[str] | None, after: int, limit: int
    ) -> list[tuple[BankTransaction, str | None]]:
        query = (
            select(BankTransaction, TransactionBatch.push_operation_key)
            .outerjoin(TransactionBatch, TransactionBatch.id == BankTransaction.batch_id)
            .where(BankTransaction.business_id == business_id, BankTransaction.account_id == account_id)
            .where(BankTransaction.seq > after)
            .order_by(BankTransaction.seq)
            .limit(limit)
        )
        if statuses:
            query = query.where(BankTransaction.status.in_(statuses))
        return [(row[0], row[1]) for row in (await self.session.execute(query)).all()]

    async def counts(self, business_id: str, account_id: str) -> dict[str, int]:
        query = (
            select(BankTransaction.status, func.count())
            .where(BankTransaction.business_id == business_id, BankTransaction.account_id == account_id)
            .group_by(BankTransaction.status)
        )
        return {status: count for status, count in (await self.session.execute(query)).all()}

    # Claiming and fencing (workers)

    async def claim(
        self, owner: str, now: datetime, until: datetime, limit: int, busy: Collection[int] = ()
    ) -> list[Claimed]:
        """Lease up to `limit` due streams that no live lease holds, earliest due first, through the index
        of due streams (an idle one is not in it: its next_attempt_at is NULL). `busy`: the streams the
        caller is still delivering, whose lease may have lapsed meanwhile; two tasks of one owner on a
        stream would pass each other's fences. On Postgres each comes with its state, read in the claim,
        unless its row moved between the claim's reads and its lock (see CLAIMED)."""
        if self._on_postgres():
            params = {"now": now, "owner": owner, "until": until, "slots": limit, "busy": list(busy)}
            split, end = len(STATE_KEYS), len(STATE_KEYS) + len(CLAIM_KEYS)
            return [
                Claimed(
                    TransactionStream(**dict(zip(CLAIM_KEYS, row[split:end], strict=True))),
                    _state_of(dict(zip(STATE_KEYS, row[:split], strict=True))) if row[end] else None,
                )
                for row in await self._alone(CLAIMED, params)
            ]
        candidates = (
            select(TransactionStream.id)
            .where(or_(TransactionStream.lease_until.is_(None), TransactionStream.lease_until < now))
            .where(TransactionStream.next_attempt_at <= now)
            .where(TransactionStream.id.not_in(busy))
            .order_by(TransactionStream.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed = await self.session.scalars(
            update(TransactionStream)
            .where(TransactionStream.id.in_(candidates.scalar_subquery()))
            .where(or_(TransactionStream.lease_until.is_(None), TransactionStream.lease_until < now))
            .values(lease_owner=owner, lease_until=until)
            .returning(TransactionStream)
            .execution_options(synchronize_session=False)
        )
        return [Claimed(stream, None) for stream in claimed.all()]

    def _on_postgres(self) -> bool:
        return self.raw is not None or self.session.get_bind().dialect.name == "postgresql"

    async def _alone(
        self, statement: Select[*tuple[Any, ...]] | TextClause | Update, params: dict[str, Any]
    ) -> Sequence[Any]:
        """The rows of a Postgres statement whose writes are whole on their own (see _fenced), by position:
        on the raw pool when there is one, else on the session."""
        if self.raw is None:
            return (await self.session.execute(statement, params)).all()
        raw = _raw(statement)
        return await self.raw.fetch(raw.sql, *raw.args(params))

    async def fence(self, fence: Fence, now: datetime) -> None:
        """The first write of a worker's transaction: raises LeaseLost when the stream is no longer ours."""
        if not fence.hand_back:
            await self.renew_lease(fence.stream_id, fence.owner, fence.until)
        elif not await self.release(fence.stream_id, fence.owner, now, 0, fence.idle_if):
            raise LeaseLost()

    async def renew_lease(self, stream_id: int, owner: str, until: datetime) -> None:
        """The fence every worker write starts with; raises LeaseLost when the stream is no longer ours."""
        renewed = await self.session.execute(RENEW, {"of_stream": stream_id, "owner": owner, "until": until})
        if rows_changed(renewed) != 1:
            raise LeaseLost()

    async def release(
        self, stream_id: int, owner: str, next_attempt_at: datetime, waits: int, idle_if: int | None = None
    ) -> bool:
        """Hand the stream back, due at `next_attempt_at`, or idle if its acceptances are still `idle_if`
        (see RELEASE); False when it was not ours (any more). As the first statement of a transaction it is
        the fence of the writes after it, like renew_lease."""
        params = {
            "of_stream": stream_id,
            "owner": owner,
            "at": next_attempt_at,
            "wait_count": waits,
            "idle_if": idle_if,
        }
        return rows_changed(await self.session.execute(RELEASE, params)) == 1

    async def note_hold(self, stream: TransactionStream, reason: str | None) -> None:
        """The account's hold as the worker found it changed: noted on the stream, and the business's version
        moved, so that its held figures (the console's, made by the events projector) are taken again."""
        await self.session.execute(
            update(TransactionStream).where(TransactionStream.id == stream.id).values(held_reason=reason)
        )
        await BankFeedRepository(self.session).bump_feed_version(stream.business_id)

    async def release_all(self, owner: str) -> None:
        await self.session.execute(
            update(TransactionStream)
            .where(TransactionStream.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )

    async def wake(self, stream_id: int, at: datetime) -> None:
        await self.session.execute(
            update(TransactionStream)
            .where(TransactionStream.id == stream_id)
            .values(next_attempt_at=at, waits=0)
        )

    # Batches

    async def state(self, stream_id: int) -> StreamState:
        """The stream's cut, its open batch, the account's hold and the Codat target: one query rather than
        one each, as the worker takes them before every batch. Only what hold_of reads of the connection and
        the feed account (a connection's other columns include its encrypted link)."""
        return _state_of((await self.session.execute(STATE, {"of_stream": stream_id})).one()._mapping)

    async def fenced_state(self, fence: Fence, now: datetime) -> StreamState:
        """The fence, then the stream's state (one statement on Postgres)."""
        if not self._on_postgres():
            await self.fence(fence, now)
            return await self.state(fence.stream_id)
        rows = await self._alone(FENCED_STATE, fence.params(now))
        if not rows:
            raise LeaseLost()
        return _state_of(dict(zip(STATE_KEYS, rows[0], strict=True)))

    async def cut_batch(
        self, stream: TransactionStream, state: StreamState, size: int, now: datetime, fence: Fence
    ) -> tuple[TransactionBatch, Sequence[WireRow]] | None:
        """The next up-to-`size` queued transactions, earliest first, bound to a new batch under a fresh
        idempotency key; None when none is queued. Fenced; `state` read after the fence of this step."""
        assert state.target is not None
        account = {
            "of_account": stream.account_id,
            "of_business": stream.business_id,
            "cut_at": state.cut[0],
            "cut_seq": state.cut[1],
        }
        values = {
            "idempotency_key": str(uuid.uuid4()),
            "codat_company_id": state.target[0],
            "codat_connection_id": state.target[1],
            "account_id": stream.account_id,
            "created_at": now,
        }
        if self._on_postgres():
            params = {**account, **values, **fence.params(now), "size": size}
            cut = await self._alone(CUT, params)
            if not cut:
                return None
            batch_id, marked = cut[0][len(WIRE_COLUMNS) :]  # CUT's columns: WIRE_COLUMNS', then these
            if batch_id is None:
                raise LeaseLost()
            assert marked == len(cut), "only the lease holder cuts the stream's queue"
            queued = [WireRow._make(row[: len(WIRE_COLUMNS)]) for row in cut]
        else:
            await self.fence(fence, now)
            queued = _wire_rows((await self.session.execute(queued_after_cut(size), account)).all())
            if not queued:
                return None
            batch_id = await self._cut_one_by_one(stream.id, queued, account, values)
        seqs = {"first_seq": queued[0].seq, "last_seq": queued[-1].seq}
        batch = TransactionBatch(
            id=batch_id, stream_id=stream.id, status=BatchStatus.SENDING.value, **values, **seqs
        )
        return batch, queued

    async def _cut_one_by_one(
        self, stream_id: int, queued: Sequence[WireRow], account: dict[str, Any], values: dict[str, Any]
    ) -> int:
        """SQLite: the cut moved, the batch inserted and its rows marked, a statement each."""
        last = queued[-1]
        await self.session.execute(
            MOVE_CUT, {"stream_id": stream_id, "to_at": last.cleared_at, "to_seq": last.seq}
        )
        batch = {
            **values,
            "stream_id": stream_id,
            "status": BatchStatus.SENDING.value,
            "first_seq": queued[0].seq,
            "last_seq": last.seq,
        }
        batch_id: int = (await self.session.execute(NEW_BATCH, batch)).scalar_one()
        marked = await self.session.execute(
            MARK_SENDING, {**account, "last_at": last.cleared_at, "last_seq": last.seq, "batch": batch_id}
        )
        assert rows_changed(marked) == len(queued), "the stream's lock keeps its queue as it was read"
        return batch_id

    async def deliver(
        self, batch_id: int, now: datetime, push_operation_key: str | None = None, fence: Fence | None = None
    ) -> None:
        """Close an open batch as delivered (with its push operation key, when given) and settle its rows,
        once; first the fence, when given (then one statement on Postgres)."""
        if fence is not None and self._on_postgres():
            params = {
                **fence.params(now),
                "batch": batch_id,
                "new_status": BatchStatus.SUCCESS.value,
                "new_error": None,
                "now": now,
                "key": push_operation_key,
                "row_status": TransactionStatus.DELIVERED.value,
                "row_error": None,
            }
            [(fenced, _)] = await self._alone(DELIVERED[fence.hand_back], params)
            if fenced != 1:
                raise LeaseLost()
            return
        if fence is not None:
            await self.fence(fence, now)
        if await self.close_batch(batch_id, BatchStatus.SUCCESS, None, now, push_operation_key):
            await self.settle(batch_id, TransactionStatus.DELIVERED, now)

    async def batch_transactions(self, batch_id: int) -> Sequence[WireRow]:
        query = (
            select(*WIRE_COLUMNS)
            .where(*in_batch(batch_id), BankTransaction.status == TransactionStatus.SENDING)
            .order_by(BankTransaction.cleared_at, BankTransaction.seq)
        )
        return _wire_rows((await self.session.execute(query)).all())

    async def pending_batch(self, push_operation_key: str) -> tuple[int, int] | None:
        """(id, stream id) of the batch recorded as pending with this push operation, if there is one."""
        row = (await self.session.execute(PENDING_BATCH, {"key": push_operation_key})).one_or_none()
        return None if row is None else (row.id, row.stream_id)

    async def record_pending(self, batch_id: int, push_operation_key: str) -> None:
        await self.session.execute(
            update(TransactionBatch)
            .where(TransactionBatch.id == batch_id, TransactionBatch.status == BatchStatus.SENDING)
            .values(status=BatchStatus.PENDING, push_operation_key=push_operation_key)
        )

    async def close_batch(
        self,
        batch_id: int,
        status: BatchStatus,
        error: str | None,
        now: datetime,
        push_operation_key: str | None = None,
    ) -> bool:
        """Close an open batch once (recording its push operation, when given: a push that finished before
        it was recorded as pending); False when someone (a webhook, another worker) already did."""
        params = {"batch": batch_id, "new_status": status.value, "new_error": error, "now": now}
        closed = await self.session.execute(CLOSE_BATCH, {**params, "key": push_operation_key})
        return rows_changed(closed) == 1

    async def settle(
        self,
        batch_id: int,
        status: TransactionStatus,
        now: datetime,
        error: str | None = None,
        only: Sequence[str] | None = None,
    ) -> int:
        """Give the batch's transactions (or `only` these ids of it) their outcome; how many there were."""
        params = {"batch": batch_id, "row_status": status.value, "row_error": error, "now": now}
        query = SETTLE if only is None else SETTLE.where(ROWS.c.transaction_id.in_(only))
        return rows_changed(await self.session.execute(query, params))

    async def settle_each(
        self, batch_id: int, status: TransactionStatus, errors: dict[str, str], now: datetime
    ) -> int:
        return sum(
            [await self.settle(batch_id, status, now, error, only=[tid]) for tid, error in errors.items()]
        )

    async def requeue_rest(self, batch_id: int) -> None:
        """Codat wrote none of the batch: what it did not refuse goes back to the queue, for a new batch."""
        requeued = await self._requeue(
            *in_batch(batch_id), BankTransaction.status == TransactionStatus.SENDING
        )
        stream = select(TransactionBatch.stream_id).where(TransactionBatch.id == batch_id).scalar_subquery()
        await self._rewind(TransactionStream.id == stream, requeued)

    async def requeue_refused(self, business_id: str, not_written_prefix: str, now: datetime) -> int:
        """The business's failed transactions whose error says Codat wrote none of them go back to the queue,
        each account due now; how many."""
        requeued = await self._requeue(
            BankTransaction.business_id == business_id,
            BankTransaction.status.in_(FAILED),
            BankTransaction.error.startswith(not_written_prefix),
        )
        for account_id in {row.account_id for row in requeued}:
            stream = (TransactionStream.business_id == business_id) & (
                TransactionStream.account_id == account_id
            )
            await self._rewind(stream, [row for row in requeued if row.account_id == account_id], now)
        return len(requeued)

    async def _requeue(self, *where: ColumnElement[bool]) -> Sequence[Any]:
        """These rows queued again, out of any batch: (account_id, cleared_at, seq) of each."""
        update_rows = (
            update(BankTransaction)
            .where(*where)
            .values(status=TransactionStatus.QUEUED, batch_id=None, error=None, completed_at=None)
            .returning(BankTransaction.account_id, BankTransaction.cleared_at, BankTransaction.seq)
        )
        return (await self.session.execute(update_rows)).all()

    async def _rewind(
        self, stream: ColumnElement[bool], requeued: Sequence[Any], due: datetime | None = None
    ) -> None:
        """The stream's cut back to just before the first of these rows it queued again, which were all cut
        already: the next batch starts there (the cut takes only queued rows, so none delivered goes twice).
        With `due`, the stream is due then (a stream with nothing left is idle, NULL, until woken)."""
        if not requeued:
            return
        first = min(requeued, key=lambda row: (row.cleared_at, row.seq))
        values: dict[str, Any] = {"cut_cleared_at": first.cleared_at, "cut_seq": first.seq - 1}  # just before
        if due is not None:
            values |= {"next_attempt_at": due, "waits": 0}
        await self.session.execute(update(TransactionStream).where(stream).values(**values))


class _ConnectionOfFeed(NamedTuple):
    """What `hold_of` reads of a connection: a plain value, not an ORM object, on the worker's every step."""

    codat_connection_id: str | None
    status: str | None


class _AccountOnFeed(NamedTuple):
    """What `hold_of` reads of an account's row on the connection."""

    registered: bool
    status: str | None
    write_hold: str | None


def _state_of(row: Mapping[Any, Any]) -> StreamState:
    """A row of STATE, by column name."""
    connection = (
        _ConnectionOfFeed(row["codat_connection_id"], row["connection_status"])
        if row["connection_row"] is not None
        else None
    )
    feed = (
        _AccountOnFeed(row["registered"], row["feed_status"], row["write_hold"])
        if row["feed_row"] is not None
        else None
    )
    batch = (
        TransactionBatch(**{key: row[f"batch_{key}"] for key in BATCH_COLUMNS})
        if row["batch_id"] is not None
        else None
    )
    target = (row["codat_company_id"], row["codat_connection_id"])
    return StreamState(
        cut=(row["cut_cleared_at"], row["cut_seq"]),
        acceptances=row["acceptances"],
        open_batch=batch,
        hold=hold_of(connection, feed),
        target=target if all(target) else None,
    )


def _wire_rows(rows: Sequence[Any]) -> list[WireRow]:
    return [WireRow._make(row) for row in rows]


def in_batch(batch_id: int) -> tuple[ColumnElement[bool], ...]:
    """The batch's rows, found through the primary key within its seq range (batch_id is not indexed)."""
    batch = TransactionBatch.id == batch_id
    return (
        BankTransaction.seq >= select(TransactionBatch.first_seq).where(batch).scalar_subquery(),
        BankTransaction.seq <= select(TransactionBatch.last_seq).where(batch).scalar_subquery(),
        BankTransaction.batch_id == batch_id,
    )
