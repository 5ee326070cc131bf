"""Audit entries from code that must not wait on the database: the Codat client tells the sink of each call
(a callback, so the client stays framework-free), and a task writes them in batches, each Codat company
named by its business. Bounded: when the database falls behind, entries are dropped and counted, never
letting a Codat call wait."""

import asyncio
import logging
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


class AuditSink:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, capacity: int = 10_000
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.queue: asyncio.Queue[tuple[CallOutcome, datetime]] = asyncio.Queue(capacity)

    def codat_call(self, call: CallOutcome) -> None:
        """The Codat client's `on_call`: never blocks, never raises."""
        try:
            self.queue.put_nowait((call, self.clock.now()))
        except asyncio.QueueFull:
            DROPPED.inc()

    async def flush(self) -> int:
        """Write what is queued; how many entries."""
        batch: list[tuple[CallOutcome, datetime]] = []
        while not self.queue.empty() and len(batch) < BATCH:
            batch.append(self.queue.get_nowait())
        if not batch:
            return 0
        companies = {call.company_id for call, _ in batch if call.company_id}
        async with self.sessions.begin() as session:
            owners = (
                dict(
                    (
                        await session.execute(
                            select(Business.codat_company_id, Business.id).where(
                                Business.codat_company_id.in_(companies)
                            )
                        )
                    ).all()
                )
                if companies
                else {}
            )
            for call, at in batch:
                detail = f"Codat {call.operation}: {call.outcome}"
                if call.correlation_id:
                    detail += f" (Codat correlation id {call.correlation_id})"
                entry = Audit(
                    owners.get(call.company_id), CODAT, f"codat.{call.operation}", call.outcome, detail
                )
                record(session, entry, at)
        return len(batch)

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
            while await sink.flush():
                pass
        except Exception:  # noqa: BLE001 - shutting down: log what could not be written
            log.exception("audit.final_flush_failed")
