"""What support staff may do from the console; every action is audited with who and when, and how it went."""

from fastapi import FastAPI

from app.audit.trail import Audit, operator, record
from app.bankfeed.repository import BankFeedRepository
from app.console.queries import dead_webhooks_of
from app.console.schemas import ActionDone
from app.errors import AppError, NotFound
from app.events import subscriptions
from app.onboarding.dependencies import onboarding_service
from app.transactions.repository import TransactionRepository
from app.transactions.service import NOT_WRITTEN_PREFIX
from app.webhooks.router import webhook_processor
from app.webhooks.service import reapply_dead_event


class WebhookNotDead(NotFound):
    code = "webhook_not_dead"


class ConsoleActions:
    def __init__(self, app: FastAPI, operator_name: str) -> None:
        self.state = app.state
        self.app = app
        self.actor = operator(operator_name)

    async def _audit(self, business_id: str | None, action: str, outcome: str, detail: str) -> ActionDone:
        async with self.state.sessionmaker.begin() as session:
            record(session, Audit(business_id, self.actor, action, outcome, detail), self.state.clock.now())
        return ActionDone(action=action, outcome=outcome, detail=detail)

    async def refresh(self, business_id: str) -> ActionDone:
        """Re-read the feed from Codat now. A failure is audited too, then answered as it is (503, 404…)."""
        try:
            await onboarding_service(self.app).refresh(business_id)
        except AppError as exc:
            await self._audit(business_id, "feed.refreshed", "failed", f"refresh from Codat: {exc.detail}")
            raise
        return await self._audit(business_id, "feed.refreshed", "ok", "statuses re-read from Codat")

    async def reapply_webhook(self, business_id: str, webhook_id: str) -> ActionDone:
        async with self.state.sessionmaker() as session:
            await BankFeedRepository(session).require_business(business_id)
            dead = {e.id for e in await dead_webhooks_of(session, business_id)}
        if webhook_id not in dead:
            raise WebhookNotDead(f"No dead webhook {webhook_id!r} for this business.")
        event = await reapply_dead_event(webhook_processor(self.state), webhook_id)
        outcome = event.status if event is not None else "gone"
        detail = f"Codat webhook {webhook_id} re-applied: {outcome}"
        if event is not None and event.error and outcome != "applied":
            detail += f" ({event.error})"
        return await self._audit(business_id, "webhook.reapplied", outcome, detail)

    async def retry_transactions(self, business_id: str) -> ActionDone:
        """Queue again the failed transactions Codat refused (it wrote none of them), never one whose push
        may have been written (timed out, or outcome unknown): those keep their failure for a person."""
        now = self.state.clock.now()
        async with self.state.sessionmaker.begin() as session:
            await BankFeedRepository(session).require_business(business_id)
            requeued = await TransactionRepository(session).requeue_refused(
                business_id, NOT_WRITTEN_PREFIX, now
            )
            detail = f"{requeued} transactions Codat had refused queued again"
            record(session, Audit(business_id, self.actor, "transactions.retried", "ok", detail), now)
        return ActionDone(action="transactions.retried", outcome="ok", detail=detail)

    async def resend_event(self, business_id: str, event_id: str, subscription_id: str) -> ActionDone:
        async with self.state.sessionmaker.begin() as session:
            await subscriptions.resend(
                session,
                event_id,
                subscription_id,
                actor=self.actor,
                now=self.state.clock.now(),
                business_id=business_id,
            )
        return ActionDone(action="event.resent", outcome="ok", detail=f"{event_id} to {subscription_id}")

    async def set_subscription(self, subscription_id: str, enabled: bool) -> ActionDone:
        async with self.state.sessionmaker.begin() as session:
            subscription = await subscriptions.set_enabled(
                session, subscription_id, enabled, actor=self.actor, now=self.state.clock.now()
            )
        state = "enabled" if subscription.enabled else "disabled"
        return ActionDone(action=f"subscription.{state}", outcome="ok", detail=f"{subscription_id} {state}")
