"""`POST /webhooks/codat`: Codat's signed events."""

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response, status

from app.errors import InvalidInput, Unauthorized, error_responses
from app.webhooks.service import WebhookProcessor, verify

router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/codat",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(Unauthorized, InvalidInput),
)
async def receive_codat_webhook(request: Request) -> Response:
    """Verify (Standard Webhooks / svix), store under `webhook-id`, apply once; redeliveries are acknowledged."""  # noqa: E501 (also the OpenAPI description)
    state = request.app.state
    event = verify(
        state.settings.webhooks.signing_secret.get_secret_value(), await request.body(), dict(request.headers)
    )
    processor = WebhookProcessor(state.sessionmaker, state.changes)
    await processor.receive(request.headers["webhook-id"], event, datetime.now(UTC))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
