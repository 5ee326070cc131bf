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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.trail import prune
from app.clock import Clock, SystemClock
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.events.delivery import Deliverer, DeliveryPolicy
from app.events.projector import Projector

log = logging.getLogger(__name__)
PRUNE_EVERY = timedelta(hours=1)
# Finished batches projected per transaction: a few, since a writer held open holds back the pruning of
# every row version deleted after it began, and bank_transaction's status updates need it to stay HOT.
# Measured (bench.transactions): 16 grew the table no more than 8 (1.07-1.12x), once the projector wrote in
# one short burst after its reads; 32, before that, 1.15-1.22x.
BATCHES_AT_ONCE = 16


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
        work, _ = await self._round()
        return work

    async def _round(self) -> tuple[int, bool]:
        """How much work the round found, and whether more is waiting now: a projection that hit its limit,
        or deliveries (each business's next event is due as soon as the last is delivered)."""
        projected, backlog = await self._project()
        delivered = await self.deliverer.deliver_due()
        await self._prune()
        return projected + delivered, backlog or delivered > 0

    async def project(self) -> int:
        projected, _ = await self._project()
        return projected

    async def _project(self) -> tuple[int, bool]:
        async with self.sessions() as session:
            businesses = await self.projector.changed_businesses(session)
            batches = await self.projector.finished_batches(session)
        for business_id in businesses:
            try:
                async with self.sessions.begin() as session:
                    await self.projector.project_business(session, business_id, self.clock.now())
            except IntegrityError:
                # Another worker made the business's first FeedState meanwhile, and emitted its changes.
                log.info("events.projected_elsewhere", extra={"business": business_id})
        for start in range(0, len(batches), BATCHES_AT_ONCE):
            async with self.sessions.begin() as session:
                chunk = batches[start : start + BATCHES_AT_ONCE]
                await self.projector.project_batches(session, chunk, self.clock.now())
        async with self.sessions.begin() as session:
            counted = await self.projector.count_due(session, self.clock.now())
        async with self.sessions() as session:
            stalled = await self.projector.stalled(session, self.clock.now())
        for business_id in stalled:
            async with self.sessions.begin() as session:
                await self.projector.project_stalled(session, business_id, self.clock.now())
        found = (len(businesses), len(batches), counted, len(stalled))
        return sum(found), self.projector.batch in found

    async def _prune(self) -> None:
        now = self.clock.now()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        async with self.sessions.begin() as session:
            await prune(session, now - timedelta(days=self.settings.audit.retention_days))

    async def run_forever(self) -> None:
        """Rounds about `idle_seconds` apart unless more is waiting: what finishes meanwhile (the batches of a
        busy delivery) is projected together, in one transaction, rather than one batch per round."""
        while True:
            try:
                _, more = await self._round()
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round; it is logged
                log.exception("events.round_failed")
                more = False
            if not more:
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
