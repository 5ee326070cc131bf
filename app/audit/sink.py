"""Audit entries from code that must not wait on the database: the Codat client tells the sink of each call
(a callback, so the client stays framework-free), and a task writes them in batches, each Codat company
named by its business. Bounded: when the database falls behind, entries are dropped and counted, never
letting a Codat call wait.

A call on a company no business is known to own yet is held back (up to HOLD_SECONDS) rather than written
without its business: connect records the company it made only after its last call (create-connection and the
accounts' batches come first), and the support agent looks for those calls on the business's timeline."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.trail import CODAT, Audit, record
from app.bankfeed.models import Business
from app.clock import Clock
from app.codat.client import CallOutcome

log = logging.getLogger(__name__)
DROPPED = Counter("bff_audit_dropped_total", "Audit entries dropped because the writer fell behind")
BATCH = 200
HOLD_SECONDS = 60.0  # longer than a connect takes, retries included


class AuditSink:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, capacity: int = 10_000
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.queue: asyncio.Queue[tuple[CallOutcome, datetime]] = asyncio.Queue(capacity)
        # Calls on a company not yet owned by a business, with when to stop waiting (monotonic seconds).
        self.held: list[tuple[CallOutcome, datetime, float]] = []

    def codat_call(self, call: CallOutcome) -> None:
        """The Codat client's `on_call`: never blocks, never raises."""
        try:
            self.queue.put_nowait((call, self.clock.now()))
        except asyncio.QueueFull:
            DROPPED.inc()

    async def flush(self, hold: bool = True) -> int:
        """Write what is queued; how many entries. With `hold`, a call on a company that no business owns
        yet is kept back for a later flush, until HOLD_SECONDS have passed (then written without one)."""
        batch = self._take()
        if not batch:
            return 0
        written = 0
        async with self.sessions.begin() as session:
            owners = await _owners(session, {call.company_id for call, _, _ in batch if call.company_id})
            for call, at, give_up_at in batch:
                owner = owners.get(call.company_id) if call.company_id else None
                if owner is None and call.company_id and hold and self._may_hold(give_up_at):
                    self.held.append((call, at, give_up_at))
                    continue
                detail = f"Codat {call.operation}: {call.outcome}"
                if call.correlation_id:
                    detail += f" (Codat correlation id {call.correlation_id})"
                record(session, Audit(owner, CODAT, f"codat.{call.operation}", call.outcome, detail), at)
                written += 1
        return written

    def _may_hold(self, give_up_at: float) -> bool:
        return time.monotonic() < give_up_at and len(self.held) < self.queue.maxsize

    def _take(self) -> list[tuple[CallOutcome, datetime, float]]:
        """The held calls, then up to BATCH queued ones."""
        batch, self.held = self.held, []
        give_up_at, limit = time.monotonic() + HOLD_SECONDS, len(batch) + BATCH
        while not self.queue.empty() and len(batch) < limit:
            call, at = self.queue.get_nowait()
            batch.append((call, at, give_up_at))
        return batch

    async def run_forever(self, idle_seconds: float = 0.5) -> None:
        while True:
            try:
                if not await self.flush():
                    await asyncio.sleep(idle_seconds)
            except Exception:  # noqa: BLE001 - the writer must outlive a database hiccup; it is logged
                log.exception("audit.flush_failed")
                await asyncio.sleep(idle_seconds)


@asynccontextmanager
async def running(sink: AuditSink) -> AsyncIterator[AuditSink]:
    """The sink's writer for the life of the app; what is queued at the end is written before it goes."""
    task = asyncio.create_task(sink.run_forever(), name="audit-sink")
    try:
        yield sink
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            while await sink.flush(hold=False):
                pass
        except Exception:  # noqa: BLE001 - shutting down: log what could not be written
            log.exception("audit.final_flush_failed")


async def _owners(session: AsyncSession, companies: set[str]) -> dict[str, str]:
    """The business owning each of these Codat companies, where one does."""
    if not companies:
        return {}
    query = select(Business.codat_company_id, Business.id).where(Business.codat_company_id.in_(companies))
    return {company: business for company, business in (await session.execute(query)).all() if company}
