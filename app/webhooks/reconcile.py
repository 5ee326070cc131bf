"""The safety net for missed webhooks: periodically re-read unsettled bank feeds from Codat."""

import asyncio
import logging
from datetime import timedelta

from app.bankfeed.exceptions import ConnectionGone
from app.bankfeed.repository import BankFeedRepository
from app.bankfeed.sync import FeedSync
from app.errors import AppError
from app.webhooks.service import WebhookProcessor

log = logging.getLogger(__name__)
CONNECTIONS_PER_ROUND = 50


async def reconcile_once(sync: FeedSync, webhooks: WebhookProcessor, stale_after: timedelta) -> int:
    """Finish stored-but-unapplied webhooks, then refresh connections not confirmed for `stale_after`."""
    try:
        await webhooks.process_backlog()
    except Exception:  # noqa: BLE001 - a backlog that cannot be read (database trouble) must not stop the refresh
        log.exception("reconcile.backlog_failed")
    async with sync.sessions() as session:
        repo = BankFeedRepository(session)
        stale = await repo.unsettled_connections(sync.clock.now() - stale_after, CONNECTIONS_PER_ROUND)
        companies = {c.business_id: (await repo.get_business(c.business_id)).codat_company_id for c in stale}  # type: ignore[union-attr]
    for connection in stale:
        try:
            await sync.refresh_connection(companies[connection.business_id], connection)  # type: ignore[arg-type]
        except AppError as exc:
            log.warning(
                "reconcile.failed", extra={"connection_id": connection.codat_connection_id, "error": exc.code}
            )
        except ConnectionGone:
            pass  # retired as history; the user is asked to connect again
    return len(stale)


async def reconcile_forever(sync: FeedSync, webhooks: WebhookProcessor, interval_seconds: int) -> None:
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await reconcile_once(sync, webhooks, timedelta(seconds=interval_seconds))
        except Exception:  # noqa: BLE001 - the loop must outlive one bad round; the error is logged
            log.exception("reconcile.round_failed")
