"""The console's API for internal tools (scopes `console:read`, `console:write`); the page in pages.py
calls the same queries and actions."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth.dependencies import require_scopes
from app.auth.principals import Service
from app.bankfeed.exceptions import BusinessNotFound
from app.console import queries
from app.console.actions import ConsoleActions, WebhookNotDead
from app.console.schemas import ActionDone, BusinessPage, FeedPage, Health
from app.db import SessionDep
from app.errors import Forbidden, InvalidInput, Unauthorized, UpstreamUnavailable, error_responses
from app.events.subscriptions import EventNotFound, SubscriptionNotFound
from app.inputs import IdPath

ConsoleReader = Annotated[Service, Depends(require_scopes("console:read"))]
ConsoleWriter = Annotated[Service, Depends(require_scopes("console:write"))]

router = APIRouter(
    prefix="/internal/v1/console",
    tags=["console"],
    responses=error_responses(Unauthorized, Forbidden, InvalidInput),
)


@router.get("/feeds", response_model=FeedPage)
async def list_feeds(
    _: ConsoleReader,
    session: SessionDep,
    health: Health = "needs_action",
    q: Annotated[
        str | None, Query(max_length=100, description="A business id prefix or part of its name.")
    ] = None,
    after: Annotated[
        str | None, Query(max_length=64, description="`nextCursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """Businesses by the health of their bank feed, by id; as of the last projection (about a second)."""
    found = await queries.list_feeds(session, health, q, after, limit)
    # Serialised once here: the list is the console's hot path, and FastAPI would validate it all again.
    return Response(found.model_dump_json(by_alias=True), media_type="application/json")


@router.get(
    "/businesses/{business_id}", response_model=BusinessPage, responses=error_responses(BusinessNotFound)
)
async def get_business(
    business_id: IdPath,
    _: ConsoleReader,
    session: SessionDep,
    before: Annotated[int | None, Query(ge=1, description="Timeline entries older than this id.")] = None,
) -> BusinessPage:
    """One business: its feed (live), transactions by status, dead webhooks, outbound events, timeline."""
    return await queries.business_page(session, business_id, before)


def actions(request: Request, operator: Service) -> ConsoleActions:
    return ConsoleActions(request.app, operator.name)


@router.post(
    "/businesses/{business_id}/refresh",
    response_model=ActionDone,
    responses=error_responses(BusinessNotFound, UpstreamUnavailable),
)
async def refresh(business_id: IdPath, operator: ConsoleWriter, request: Request) -> ActionDone:
    """Re-read the business's connection and accounts from Codat now."""
    return await actions(request, operator).refresh(business_id)


@router.post(
    "/businesses/{business_id}/webhooks/{webhook_id}/reapply",
    response_model=ActionDone,
    responses=error_responses(BusinessNotFound, WebhookNotDead),
)
async def reapply_webhook(
    business_id: IdPath, webhook_id: Annotated[str, IdPath], operator: ConsoleWriter, request: Request
) -> ActionDone:
    """Apply one of the business's dead Codat webhooks again (after what broke it is fixed)."""
    return await actions(request, operator).reapply_webhook(business_id, webhook_id)


@router.post(
    "/businesses/{business_id}/transactions/retry",
    response_model=ActionDone,
    responses=error_responses(BusinessNotFound),
)
async def retry_transactions(business_id: IdPath, operator: ConsoleWriter, request: Request) -> ActionDone:
    """Queue again the transactions Codat refused (none of them was written); never a push that timed out."""
    return await actions(request, operator).retry_transactions(business_id)


@router.post(
    "/businesses/{business_id}/events/{event_id}/resend",
    response_model=ActionDone,
    responses=error_responses(EventNotFound, SubscriptionNotFound),
)
async def resend_event(
    business_id: IdPath,
    event_id: Annotated[str, IdPath],
    subscription: Annotated[str, Query(max_length=40)],
    operator: ConsoleWriter,
    request: Request,
) -> ActionDone:
    """Send one outbound event again to one subscription, under its original `webhook-id`."""
    return await actions(request, operator).resend_event(business_id, event_id, subscription)


@router.post(
    "/subscriptions/{subscription_id}/{state}",
    response_model=ActionDone,
    responses=error_responses(SubscriptionNotFound),
)
async def set_subscription(
    subscription_id: Annotated[str, IdPath],
    state: Literal["enable", "disable"],
    operator: ConsoleWriter,
    request: Request,
) -> ActionDone:
    """`enable` or `disable` a subscription."""
    return await actions(request, operator).set_subscription(subscription_id, state == "enable")
