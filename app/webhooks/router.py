"""`POST /webhooks/codat`: Codat's signed events; `/internal/v1/webhooks/…`: the operator's view of them."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from starlette.datastructures import State

from app.auth.dependencies import require_scopes
from app.auth.principals import Service
from app.errors import Forbidden, InvalidInput, NotFound, Unauthorized, error_responses
from app.webhooks.service import (
    RetryPolicy,
    StoredEvent,
    WebhookProcessor,
    list_events,
    reapply_dead_event,
    verify,
)

router = APIRouter(tags=["webhooks"])


def webhook_processor(state: State) -> WebhookProcessor:
    """The processor of an app's state: its sessions, change feed and clock; the retry policy of settings."""
    settings = state.settings.webhooks
    return WebhookProcessor(
        state.sessionmaker,
        state.changes,
        clock=state.clock,
        retry=RetryPolicy(settings.apply_attempts, settings.apply_backoff_seconds),
    )


@router.post(
    "/webhooks/codat",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(Unauthorized, InvalidInput),
)
async def receive_codat_webhook(request: Request) -> Response:
    """Verify (Standard Webhooks / svix), store under `webhook-id`, apply once; redeliveries are acknowledged.
    A signed event that does not parse is stored as rejected and answered 422; one that fails to apply is
    acknowledged and retried with backoff, then parked as dead."""
    state = request.app.state
    event = verify(
        state.settings.webhooks.signing_secret.get_secret_value(), await request.body(), dict(request.headers)
    )
    await webhook_processor(state).receive(request.headers["webhook-id"], event, datetime.now(UTC))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


WebhooksAdmin = Annotated[Service, Depends(require_scopes("webhooks:admin"))]
operator_router = APIRouter(prefix="/internal/v1/webhooks", tags=["internal"])


@operator_router.get("/events", responses=error_responses(Unauthorized, Forbidden, InvalidInput))
async def list_webhook_events(
    request: Request,
    _: WebhooksAdmin,
    status: Annotated[Literal["dead", "rejected", "received"], Query()] = "dead",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[StoredEvent]:
    """Stored Codat events in one status, newest first: `dead` (failed every try; may be re-applied),
    `rejected` (did not parse; never applied) or `received` (waiting to be applied or retried)."""
    return await list_events(request.app.state.sessionmaker, status, limit)


@operator_router.post(
    "/events/{webhookId}/reapply", responses=error_responses(Unauthorized, Forbidden, NotFound, InvalidInput)
)
async def reapply_webhook_event(
    request: Request,
    _: WebhooksAdmin,
    webhookId: Annotated[str, Path(max_length=100)],  # noqa: N803
) -> StoredEvent:
    """Apply a dead event again, now, with its tries reset; the answer is its new status and error."""
    event = await reapply_dead_event(webhook_processor(request.app.state), webhookId)
    if event is None:
        raise NotFound(f"No dead webhook event {webhookId!r}.")
    return event
