"""What the transactions worker does besides delivering: sample the backlog gauges, prune old rows."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.backlog import sample_forever
from app.clock import Clock
from app.config import Settings
from app.retention import prune_forever


@asynccontextmanager
async def housekeeping(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, clock: Clock
) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(sample_forever(sessions, clock, settings.ops.gauges_interval_seconds))]
    if settings.retention.interval_seconds > 0:
        tasks.append(asyncio.create_task(prune_forever(sessions, settings.retention, clock)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
