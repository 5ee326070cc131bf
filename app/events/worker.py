"""The events loop: project committed state into events, deliver what is due, prune the audit trail.

Runs inside `bankfeeds-bff worker` beside the transactions worker, and in-process under `dev`. Several may
run at once on Postgres: projection locks each business's FeedState row, and deliveries are claimed with
`FOR UPDATE SKIP LOCKED` and a lease.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.trail import prune
from app.clock import Clock, SystemClock
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.events.delivery import Deliverer, DeliveryPolicy
from app.events.projector import Projector

log = logging.getLogger(__name__)
PRUNE_EVERY = timedelta(hours=1)


class EventWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        clock: Clock,
        settings: Settings,
        policy: DeliveryPolicy | None = None,
        idle_seconds: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.settings = settings
        self.idle_seconds = idle_seconds
        self.projector = Projector(timedelta(seconds=settings.events.stalled_after_seconds))
        self.deliverer = Deliverer(
            sessions,
            http,
            clock,
            settings.events,
            allow_private=settings.private_targets_allowed,
            policy=policy or DeliveryPolicy(),
        )
        self._pruned_at = clock.now() - PRUNE_EVERY

    async def run_once(self) -> int:
        """One round; how much work it found (0 when idle)."""
        work = await self.project()
        work += await self.deliverer.deliver_due()
        await self._prune()
        return work

    async def project(self) -> int:
        async with self.sessions() as session:
            businesses = await self.projector.changed_businesses(session)
        for business_id in businesses:
            async with self.sessions.begin() as session:
                await self.projector.project_business(session, business_id, self.clock.now())
        async with self.sessions() as session:
            batches = await self.projector.finished_batches(session)
        for batch, business_id in batches:
            async with self.sessions.begin() as session:
                await self.projector.project_batch(session, batch.id, business_id, self.clock.now())
        async with self.sessions() as session:
            stalled = await self.projector.stalled(session, self.clock.now())
        for business_id in stalled:
            async with self.sessions.begin() as session:
                await self.projector.project_stalled(session, business_id, self.clock.now())
        return len(businesses) + len(batches) + len(stalled)

    async def _prune(self) -> None:
        now = self.clock.now()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        async with self.sessions.begin() as session:
            await prune(session, now - timedelta(days=self.settings.audit.retention_days))

    async def run_forever(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round; it is logged
                log.exception("events.round_failed")
                busy = 0
            if not busy:
                await asyncio.sleep(self.idle_seconds)


def events_http_client() -> httpx.AsyncClient:
    # No redirects: a subscriber could otherwise bounce a signed delivery to an address we refused.
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)


@asynccontextmanager
async def in_process(app: FastAPI) -> AsyncIterator[None]:
    """`dev`: the events loop beside the server, on its sessions and clock."""
    state = app.state
    async with events_http_client() as http:
        worker = EventWorker(state.sessionmaker, http, state.clock, state.settings)
        task = asyncio.create_task(worker.run_forever(), name="events-worker")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def run_standalone(settings: Settings) -> None:
    """Part of `bankfeeds-bff worker`."""
    engine = create_engine(settings, application_name="bankfeeds-bff-events")
    try:
        async with events_http_client() as http:
            await EventWorker(create_sessionmaker(engine), http, SystemClock(), settings).run_forever()
    finally:
        await engine.dispose()
