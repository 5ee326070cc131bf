"""The outbox worker: delivers each account's accepted transactions to Codat, in order, exactly once.

Per account (a stream), one batch at a time: up to 1,000 queued transactions in (date, accepted) order are
bound to a batch with a fresh idempotency key and committed; then the batch is pushed; then its push
operation is followed (polled here, or settled by a `bankTransactions.write.*` webhook) to Success or
Failed, and only then is the next batch cut. A worker holds a stream through a lease it renews with every
write. If it dies, the lease lapses, another worker takes the stream and finds the open batch: it pushes the
same transactions under the same key, and Codat replays its first answer instead of writing them twice.

What a batch costs does not depend on its size, so it is kept to a few statements: the fence with the
account's hold, the Codat target and the open batch (one query), the cut, and the outcome of the push, read
once straight after it (a push still Pending is recorded as such and followed later). When the batch was the
last of the queue, the outcome also hands the stream back: idle (not claimed again until an acceptance) if
nothing was accepted since the cut. On Postgres the claim (which reads each stream's state too, so a stream's
first step needs no fence of its own unless its row moved meanwhile), the fence with the state, the cut and a
Success are one statement each, run outside a transaction (app/transactions/repository.py says why that is
safe) on raw asyncpg connections, without SQLAlchemy's execution path (most of the worker's CPU per
statement); on SQLite, short transactions.

Retried: Codat unavailable (network, timeouts, 408, 429, 5xx), a key still in flight, a push still Pending.
Held (app/transactions/holds.py): an account Codat would refuse (dead connection, account not connected,
credentials revoked, or a push Codat refused for the account itself) is left queued and looked at again
every `retry_max_seconds` until the feed is mended; a refused batch goes back to the queue whole.
Not retried: a push Codat refuses or reports Failed (the transactions it names get its reason, the others
are queued again, since none was written), or TimedOut (it may have been written). A batch still unsent
when Codat's 90-minute replay window is near is failed rather than risk a second write.

Runs as `bankfeeds-bff worker`, as many as you like on Postgres (claims use FOR UPDATE SKIP LOCKED), and
in-process under `dev` (SQLite: one worker is what it is meant for, though leases keep several correct).
"""

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from fastapi import FastAPI
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.clock import Clock, SystemClock, as_utc
from app.codat import schemas as codat
from app.codat.client import CodatClient, build_http_client
from app.codat.exceptions import CodatConflict, CodatRejected, CodatUnavailable
from app.config import Settings
from app.db import create_engine, create_sessionmaker, one_statement_sessions
from app.rawpool import RawPool
from app.transactions import holds
from app.transactions.models import BatchStatus, TransactionBatch, TransactionStream
from app.transactions.repository import (
    Claimed,
    Fence,
    LeaseLost,
    StreamState,
    TransactionRepository,
    WireRow,
)
from app.transactions.service import (
    hold_batch,
    record_failed,
    record_outcome,
    record_refusal,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[TransactionRepository, datetime], Awaitable[T]]
# What a standalone worker runs beside delivering, on its sessions and clock.
Alongside = Callable[[async_sessionmaker[AsyncSession], Clock], AbstractAsyncContextManager[None]]

MAX_PUSH = 1000  # Codat's maxItems for one push
# Codat replays a keyed request for 90 minutes; past that, sending a batch again could write it twice.
REPLAY_WINDOW = timedelta(minutes=85)
UNKNOWN_OUTCOME = (
    "Not sent again: Codat's 90-minute replay window passed before the push's outcome was known."
)
HELD = Gauge(
    "bff_transactions_held",
    "Transactions held until their bank feed is mended (every worker reports the same total: use max).",
)


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 8  # accounts one worker delivers at once
    lease_seconds: float = 30.0
    idle_seconds: float = 1.0  # how long to sleep when nothing is due
    batch_size: int = MAX_PUSH
    retry_base_seconds: float = 1.0  # first wait after Codat is unavailable or a push is still Pending
    retry_max_seconds: float = 60.0
    held_gauge_seconds: float = 15.0  # how often to count held transactions for bff_transactions_held


@dataclass(frozen=True)
class Wait:
    """Release the stream until `seconds` from now."""

    seconds: float


@dataclass(frozen=True)
class Done:
    """Nothing left to deliver as of `seen` acceptances (read before the cut that found the queue's end):
    handed back idle unless more were accepted since."""

    seen: int


class Released:
    """The step handed the stream back itself, in its last transaction: nothing left to deliver."""


@dataclass(frozen=True)
class Cut:
    """A batch to send, with its transactions while it is unsent. `seen`: when the batch was just cut, the
    acceptances read before it (a short batch is then the queue's end as of them); None for a batch found
    open, which says nothing of what was accepted since it was cut."""

    batch: TransactionBatch
    transactions: Sequence[WireRow]
    seen: int | None


RELEASED = Released()
CONTINUE = None  # progress: take the next step now
Outcome = Wait | Done | Released | None


class TransactionWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        codat_client: CodatClient,
        clock: Clock,
        config: WorkerConfig = WorkerConfig(),
        name: str | None = None,
    ) -> None:
        self.sessions = sessions
        engine = sessions.kw["bind"]
        # Postgres: a step that is one statement runs outside a transaction, without BEGIN and COMMIT's
        # round trips (the repository makes the cut and a delivered push one statement each there), and the
        # repository's own such statements on raw asyncpg connections, one for each account in delivery.
        postgres = engine.dialect.name == "postgresql"
        self.statements = one_statement_sessions(sessions)
        self.raw = RawPool.of(engine, config.concurrency, "bankfeeds-bff-worker") if postgres else None
        self.codat = codat_client
        self.clock = clock
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    async def run_forever(self) -> None:
        """Keep up to `concurrency` streams in delivery; claim more as slots free up."""
        active: dict[asyncio.Task[None], int] = {}  # each task's stream
        counted_at = float("-inf")
        try:
            while True:
                if asyncio.get_running_loop().time() - counted_at >= self.config.held_gauge_seconds:
                    counted_at = asyncio.get_running_loop().time()
                    await self.report_held()
                for claimed in await self._claim(self.config.concurrency - len(active), active.values()):
                    task = asyncio.create_task(self._deliver(*claimed))
                    active[task] = claimed.stream.id
                    task.add_done_callback(active.pop)
                if active:
                    await asyncio.wait(
                        active, timeout=self.config.idle_seconds, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    await asyncio.sleep(self.config.idle_seconds)
        finally:
            for task in active:
                task.cancel()
            # Let them roll back and hand their connections back before the engine goes.
            await asyncio.gather(*active, return_exceptions=True)
            await self._release_all()

    async def _release_all(self) -> None:
        """On the way out, hand back every stream still leased, so the next worker need not wait for the
        leases to lapse: a batch cut short is sent again under its key, which Codat replays."""
        try:
            await self._transaction(lambda repo, now: repo.release_all(self.name))
        except Exception:  # noqa: BLE001 - the leases lapse on their own; it is logged
            log.exception("transactions.release_all_failed")

    async def report_held(self) -> None:
        """Set bff_transactions_held from the database: one total, whichever worker counts it."""
        try:
            HELD.set(await self._transaction(lambda repo, now: repo.held_count()))
        except Exception:  # noqa: BLE001 - a missed count must not stop delivery; it is logged
            log.exception("transactions.held_count_failed")

    async def _claim(self, slots: int, busy: Collection[int]) -> Sequence[Claimed]:
        if slots <= 0:
            return []
        try:
            return await self._transaction(
                lambda repo, now: repo.claim(self.name, now, self._lease_end(now), slots, list(busy)),
                one_statement=True,
            )
        except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup; it is logged
            log.exception("transactions.claim_failed")
            return []

    async def _deliver(self, stream: TransactionStream, claimed: StreamState | None) -> None:
        """Take the stream's steps until it is done or must wait, then release it. `claimed`: its state as
        the claim read it, for the first step."""
        waits = stream.waits
        try:
            while (outcome := await self._step(stream, waits, claimed)) is CONTINUE:
                waits, claimed = 0, None
        except LeaseLost:
            log.warning("transactions.lease_lost", extra={"stream": stream.id, "worker": self.name})
            return
        except Exception:  # noqa: BLE001 - one stream's failure must not stop the others; it is logged
            log.exception("transactions.step_failed", extra={"stream": stream.id})
            outcome = Wait(self._backoff(waits))
        if isinstance(outcome, Released):
            return
        if isinstance(outcome, Done):
            seconds, waits, idle_if = 0.0, 0, outcome.seen
        else:
            seconds, waits, idle_if = outcome.seconds, waits + 1, None
        try:
            await self._transaction(
                lambda repo, now: repo.release(
                    stream.id, self.name, now + timedelta(seconds=seconds), waits, idle_if
                ),
                one_statement=True,
            )
        except Exception:  # noqa: BLE001 - the lease lapses on its own; it is logged
            log.exception("transactions.release_failed", extra={"stream": stream.id})

    async def _step(self, stream: TransactionStream, waits: int, claimed: StreamState | None) -> Outcome:
        # Each of its writes is fenced and whole on its own: no transaction around them on Postgres.
        found = await self._transaction(
            lambda repo, now: self._next_batch(repo, stream, now, claimed), one_statement=True
        )
        if not isinstance(found, Cut):
            return found
        batch = found.batch
        if batch.status == BatchStatus.PENDING:
            return await self._follow(stream, batch, waits)
        if self.clock.now() - as_utc(batch.created_at) > REPLAY_WINDOW:
            await self._fenced(stream, lambda repo, now: record_failed(repo, batch.id, UNKNOWN_OUTCOME, now))
            return CONTINUE
        return await self._send(stream, found, waits)

    async def _next_batch(
        self,
        repo: TransactionRepository,
        stream: TransactionStream,
        now: datetime,
        claimed: StreamState | None,
    ) -> Cut | Wait | Done:
        """The open batch, or a new one cut from the queue; with its transactions while it is unsent. The
        state is read behind the fence, unless the claim that just fenced the stream read it."""
        state = claimed or await repo.fenced_state(self._fence(stream, now), now)
        if (batch := state.open_batch) is not None:
            sending = batch.status == BatchStatus.SENDING
            return Cut(batch, await repo.batch_transactions(batch.id) if sending else [], None)
        if state.hold != stream.held_reason:
            await repo.note_hold(stream, state.hold)
            stream.held_reason = state.hold
        if state.hold is not None or state.target is None:
            return Wait(self.config.retry_max_seconds)  # held: looked at again until the feed is mended
        cut = await repo.cut_batch(stream, state, self.config.batch_size, now, self._fence(stream, now))
        return Done(state.acceptances) if cut is None else Cut(*cut, state.acceptances)

    async def _send(self, stream: TransactionStream, cut: Cut, waits: int) -> Outcome:
        batch, transactions = cut.batch, cut.transactions
        try:
            operation = await self.codat.create_bank_transactions(
                batch.codat_company_id,
                batch.codat_connection_id,
                batch.account_id,
                [_wire(t) for t in transactions],
                idempotency_key=batch.idempotency_key,
            )
        except CodatConflict:
            return Wait(self._backoff(waits))  # the same key is still being processed (another worker's send)
        except CodatUnavailable as exc:
            return Wait(self._backoff(waits, exc))
        except CodatRejected as exc:
            log.error(
                "transactions.push_refused",
                extra={
                    "batch": batch.id,
                    "status": exc.status_code,
                    "codat_correlation_id": exc.correlation_id,
                },
            )
            reason = "; ".join(exc.validation_errors) or exc.error or f"HTTP {exc.status_code}"
            errors = dict.fromkeys(exc.item_ids, reason)
            if holds.TARGET_ITEMS & errors.keys():
                await self._fenced(stream, lambda repo, now: hold_batch(repo, batch, errors, reason, now))
                return Wait(self.config.retry_max_seconds)
            await self._fenced(
                stream,
                lambda repo, now: record_refusal(repo, batch, errors, reason, BatchStatus.REFUSED, now),
            )
            return CONTINUE
        log.info(
            "transactions.pushed",
            extra={
                "batch": batch.id,
                "size": len(transactions),
                "push_operation_key": operation.push_operation_key,
            },
        )
        pending = Wait(self._backoff(waits))  # how long to leave a push still Pending
        if operation.status is codat.PushOperationStatus.PENDING:
            # Usually finished by the time it is asked: then the push costs one transaction to record.
            try:
                operation = await self.codat.get_push_operation(
                    batch.codat_company_id, operation.push_operation_key
                )
            except CodatUnavailable as exc:
                pending = Wait(self._backoff(waits, exc))
            except CodatRejected as exc:
                log.error(
                    "transactions.push_unreadable", extra={"batch": batch.id, "status": exc.status_code}
                )
                pending = Wait(self.config.retry_max_seconds)
        return await self._record(stream, cut, operation, pending)

    async def _record(
        self, stream: TransactionStream, cut: Cut, operation: codat.PushOperation, pending: Wait
    ) -> Outcome:
        """Record what became of a push, in one transaction; a Success that ends the queue hands the stream
        back in it too (idle, or due again if anything was accepted since, as after Done)."""
        batch = cut.batch
        success = operation.status is codat.PushOperationStatus.SUCCESS
        release = success and len(cut.transactions) < self.config.batch_size  # the queue's end at the cut

        async def record(repo: TransactionRepository, now: datetime) -> bool:
            fence = self._fence(stream, now, hand_back=release, idle_if=cut.seen)
            if success:
                await repo.deliver(batch.id, now, operation.push_operation_key, fence)
                return True
            await repo.fence(fence, now)
            await repo.record_pending(batch.id, operation.push_operation_key)
            return await record_outcome(repo, batch, operation, now)

        if not await self._transaction(record, one_statement=success):
            return pending
        return RELEASED if release else CONTINUE

    async def _follow(self, stream: TransactionStream, batch: TransactionBatch, waits: int) -> Outcome:
        assert batch.push_operation_key is not None
        try:
            operation = await self.codat.get_push_operation(batch.codat_company_id, batch.push_operation_key)
        except CodatUnavailable as exc:
            return Wait(self._backoff(waits, exc))
        except CodatRejected as exc:
            log.error("transactions.push_unreadable", extra={"batch": batch.id, "status": exc.status_code})
            return Wait(self.config.retry_max_seconds)
        finished = await self._fenced(stream, lambda repo, now: record_outcome(repo, batch, operation, now))
        return CONTINUE if finished else Wait(self._backoff(waits))

    async def _fenced(self, stream: TransactionStream, work: Work[T]) -> T:
        """A transaction that may write only while the stream is still ours (LeaseLost otherwise)."""

        async def fenced(repo: TransactionRepository, now: datetime) -> T:
            await repo.fence(self._fence(stream, now), now)
            return await work(repo, now)

        return await self._transaction(fenced)

    async def _transaction(self, work: Work[T], one_statement: bool = False) -> T:
        """One short transaction; with `one_statement`, work whose every write is whole on its own, which
        on Postgres runs without one. Cancelling the worker (shutdown) lets it commit or roll back first: a
        SQLite connection interrupted mid-statement would be dropped still holding the database's write
        lock."""
        sessions, raw = (self.statements, self.raw) if one_statement else (self.sessions, None)

        async def unit() -> T:
            if raw is not None:
                # Postgres, AUTOCOMMIT: each statement commits as it runs, so there is no transaction to begin
                # or commit; the session's begin and commit alone cost ~75 µs of CPU a step, unused by the
                # raw statements.
                async with sessions() as session:
                    return await work(TransactionRepository(session, raw), self.clock.now())
            async with sessions.begin() as session:
                return await work(TransactionRepository(session, raw), self.clock.now())

        task = asyncio.create_task(unit())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.gather(task, return_exceptions=True)
            raise

    def _lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.config.lease_seconds)

    def _fence(
        self, stream: TransactionStream, now: datetime, hand_back: bool = False, idle_if: int | None = None
    ) -> Fence:
        return Fence(stream.id, self.name, self._lease_end(now), hand_back, idle_if)

    def _backoff(self, waits: int, exc: CodatUnavailable | None = None) -> float:
        if exc is not None and exc.retry_after_from_codat:
            return float(exc.retry_after_seconds)
        return min(self.config.retry_base_seconds * 2.0**waits, self.config.retry_max_seconds)


def _wire(transaction: WireRow) -> codat.BankTransaction:
    return codat.BankTransaction(
        id=transaction.transaction_id,
        date=transaction.cleared_at,
        description=transaction.description,
        amount=transaction.amount,
        balance=transaction.balance,
        transaction_type=codat.BankTransactionType(transaction.transaction_type),
    )


@asynccontextmanager
async def in_process(app: FastAPI) -> AsyncIterator[None]:
    """`dev`: one worker beside the server, on its sessions, Codat client (the sandbox) and clock; stopped,
    its transactions finished, before the server's engine goes."""
    state = app.state
    worker = TransactionWorker(state.sessionmaker, state.codat, state.clock, name="in-process")
    task = asyncio.create_task(worker.run_forever(), name="transactions-worker")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def run_standalone(
    settings: Settings, config: WorkerConfig, alongside: Alongside | None = None
) -> None:
    """`bankfeeds-bff worker`: until SIGTERM or Ctrl-C; a batch cut short is finished by the next worker.
    `alongside` runs beside it on its sessions and clock (the CLI passes app/housekeeping.py's)."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)  # type: ignore[union-attr]
    engine = create_engine(settings, application_name="bankfeeds-bff-worker")
    sessions, clock = create_sessionmaker(engine), SystemClock()
    try:
        async with (
            build_http_client(settings.codat) as http,
            alongside(sessions, clock) if alongside else nullcontext(),
        ):
            worker = TransactionWorker(sessions, CodatClient(http, settings.codat), clock, config)
            log.info("transactions.worker_started", extra={"worker": worker.name})
            await worker.run_forever()
    except asyncio.CancelledError:
        log.info("transactions.worker_stopped")
    finally:
        await engine.dispose()
