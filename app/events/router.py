"""The subscription API for the fintech's internal services (scope `events:admin`)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from app.auth.dependencies import require_scopes
from app.auth.principals import Service
from app.db import SessionDep
from app.errors import Forbidden, InvalidInput, Unauthorized, error_responses
from app.events import subscriptions
from app.events.schemas import ReplayIn, ReplayOut, SubscriptionCreated, SubscriptionIn, SubscriptionOut
from app.events.subscriptions import SubscriptionNotFound, subscription_out

EventsAdmin = Annotated[Service, Depends(require_scopes("events:admin"))]

router = APIRouter(
    prefix="/internal/v1/event-subscriptions",
    tags=["events"],
    responses=error_responses(Unauthorized, Forbidden, InvalidInput),
)


def service_actor(service: Service) -> str:
    return f"service:{service.name}"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionCreated,
)
async def create_subscription(
    body: SubscriptionIn, service: EventsAdmin, session: SessionDep, request: Request
) -> SubscriptionCreated:
    """Subscribe a URL to event types (optionally of one business). The answer carries the subscription's
    signing secret, once: verify each delivery with it (Standard Webhooks). In `prod`, a URL whose host
    resolves to a loopback, private or reserved address is refused unless `events.allow_private_targets`."""
    settings = request.app.state.settings
    subscription, secret = await subscriptions.create(
        session,
        body,
        allow_private=settings.private_targets_allowed,
        actor=service_actor(service),
        now=request.app.state.clock.now(),
    )
    return SubscriptionCreated(**subscription_out(subscription).model_dump(), secret=secret)


@router.get("", response_model=list[SubscriptionOut])
async def list_subscriptions(_: EventsAdmin, session: SessionDep) -> list[SubscriptionOut]:
    """Every subscription, with whether it is enabled and, if not, why (never its secret)."""
    return [subscription_out(s) for s in await subscriptions.list_all(session)]


@router.post(
    "/{subscription_id}/replay", response_model=ReplayOut, responses=error_responses(SubscriptionNotFound)
)
async def replay_subscription(
    subscription_id: str, body: ReplayIn, service: EventsAdmin, session: SessionDep, request: Request
) -> ReplayOut:
    """Send again every event the subscription wants since `since`, under their original `webhook-id`s."""
    queued = await subscriptions.replay(
        session, subscription_id, body.since, actor=service_actor(service), now=request.app.state.clock.now()
    )
    return ReplayOut(queued=queued)


@router.post(
    "/{subscription_id}/enable",
    response_model=SubscriptionOut,
    responses=error_responses(SubscriptionNotFound),
)
async def enable_subscription(
    subscription_id: str, service: EventsAdmin, session: SessionDep, request: Request
) -> SubscriptionOut:
    """Deliver again to a subscription that was disabled; what waited for it goes out in order."""
    subscription = await subscriptions.set_enabled(
        session, subscription_id, True, actor=service_actor(service), now=request.app.state.clock.now()
    )
    return subscription_out(subscription)
