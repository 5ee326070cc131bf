"""The Portal's switches and the test knobs, under ``/_sandbox`` (unauthenticated: a development tool).

JSON is camelCase. PUT bodies are partial: the fields given (nested ones too) replace the current values.
Invalid input is a 422 in Codat's ErrorMessage shape whose ``validation.errors[].itemId`` names the field.

- ``GET /_sandbox/``: an HTML page to see and change all of this.
- ``GET|PUT /_sandbox/portal``: ``{integrationEnabled: bool, callout: {en: {title, body}, fr: {title, body}}
  (title <= 50, body <= 150 characters, plain text), dataTypes: {bankAccounts: bool, bankTransactions: bool},
  webhook: {url: str|null, secret: "whsec_…"|null}, redirectUrl: str|null, appName: str,
  integrations: {platformKey: bool} (the platforms other than hcws), sageLoginUrl: str|null}``.
- ``GET|PUT /_sandbox/knobs``: ``{otpLifetimeSeconds, latencyMs, errorRate, timeoutRate,
  timeoutSeconds (null: hang until the client gives up), rateLimitRate, retryAfterSeconds,
  dailyQuota (null: none), operations: [operationId] (empty: all), webhookRetryDelaysSeconds: [float]}``.
  The three rates share one draw per call, so their sum is at most 1.
- ``GET /_sandbox/counters``: ``{operationId: calls}``, every call that reached an operation.
- ``POST /_sandbox/reset``: 204; no data, config defaults, real time, seeds restarted.
- ``GET /_sandbox/clock``, ``POST /_sandbox/clock/advance`` ``{seconds: N}``: ``{now: DateTime}``, after
  applying what came due meanwhile (lagged disconnects and unlinks, push timeouts, the quota's reset), with
  their webhooks.
- ``POST /_sandbox/connections/{connectionId}/fail`` ``{statusCode: "401", message: "…"}``: the Connection,
  after recording the error in its ``dataConnectionErrors`` and sending ``connection.failed``.
- ``POST /_sandbox/connections/{connectionId}/status`` ``{status: PendingAuth|Linked|Unlinked|Deauthorized}``:
  the Connection, after sending the matching ``connection.*`` webhook.
- ``POST /_sandbox/connections/{connectionId}/accounts/{accountId}/disconnect``: the SourceAccountV2, after
  sending ``bankFeeds.sourceAccount.disconnected`` (at once, as Codat sees it; a disconnect in the
  QuickBooks stand-in shows only after the disconnect lag).
- ``GET /_sandbox/connections/{connectionId}/accounts/{accountId}/bankTransactions``: the transactions
  QuickBooks has recorded for the source account, in the order written, each with its ``pushOperationKey``.
- ``GET /_sandbox/webhooks/deliveries``: ``[{eventId, eventType, url, status (pending|delivered|failed|
  no consumer), attempts: [{at, statusCode, error}], event}]``, oldest first.
- ``POST /_sandbox/webhooks/{eventId}/resend``: 202 and the new delivery: the same event (same id and body)
  sent again, as an at-least-once sender would.
"""

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.sandbox import views
from app.sandbox.api.route import catch_up
from app.sandbox.clock import iso
from app.sandbox.context import lifecycle, public_root, sandbox_state
from app.sandbox.errors import CodatError, from_validation_error, invalid
from app.sandbox.models import ConnectionStatus
from app.sandbox.pages.render import page, render
from app.sandbox.responses import JSONResponse, parse_json
from app.sandbox.state import UnknownOperations

router = APIRouter(prefix="/_sandbox")


class _ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0)


class _StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: ConnectionStatus


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = parse_json(await request.body() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise invalid(
            "The request body must be a JSON object.",
            item_id=None,
            validator="AdminValidator",
            status_code=422,
        )
    return body


async def _parse(request: Request, model: type[Any]) -> Any:
    try:
        return model.model_validate(await _json_object(request))
    except ValidationError as exc:
        raise from_validation_error(exc, validator="AdminValidator", status_code=422) from None


@router.get("/")
async def admin_page(request: Request) -> HTMLResponse:
    state = sandbox_state(request)
    body = render(
        "admin.html",
        root=public_root(request),
        portal=json.dumps(state.portal.to_json(), indent=2, ensure_ascii=False),
        knobs=json.dumps(state.knobs.to_json(), indent=2),
        counters=json.dumps(dict(sorted(state.counters.items())), indent=2),
        now=iso(state.clock.now()),
        deliveries=len(state.webhooks.deliveries),
    )
    return page("Codat sandbox", body)


@router.get("/portal")
async def get_portal(request: Request) -> JSONResponse:
    return JSONResponse(sandbox_state(request).portal.to_json())


@router.put("/portal")
async def put_portal(request: Request) -> JSONResponse:
    changes = await _json_object(request)
    try:
        portal = sandbox_state(request).set_settings(changes)
    except ValidationError as exc:
        raise from_validation_error(exc, validator="PortalValidator", status_code=422) from None
    return JSONResponse(portal.to_json())


@router.get("/knobs")
async def get_knobs(request: Request) -> JSONResponse:
    return JSONResponse(sandbox_state(request).knobs.to_json())


@router.put("/knobs")
async def put_knobs(request: Request) -> JSONResponse:
    changes = await _json_object(request)
    try:
        knobs = sandbox_state(request).set_knobs(changes)
    except ValidationError as exc:
        raise from_validation_error(exc, validator="KnobsValidator", status_code=422) from None
    except UnknownOperations as exc:
        raise invalid(str(exc), item_id="operations", validator="KnobsValidator", status_code=422) from None
    return JSONResponse(knobs.to_json())


@router.get("/counters")
async def get_counters(request: Request) -> JSONResponse:
    return JSONResponse(dict(sandbox_state(request).counters))


@router.post("/reset", status_code=204)
async def reset(request: Request) -> Response:
    sandbox_state(request).reset()
    return Response(status_code=204)


@router.get("/clock")
async def get_clock(request: Request) -> JSONResponse:
    return JSONResponse({"now": iso(sandbox_state(request).clock.now())})


@router.post("/clock/advance")
async def advance_clock(request: Request) -> JSONResponse:
    advance = await _parse(request, _ClockAdvance)
    now = sandbox_state(request).clock.advance(advance.seconds)
    catch_up(request)
    return JSONResponse({"now": iso(now)})


class _Failure(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    status_code: str = Field("401", alias="statusCode", pattern=r"^\d{3}$")
    message: str = Field("The platform refused the connection's authorization.", min_length=1, max_length=500)


@router.post("/connections/{connectionId}/fail")
async def fail_connection(request: Request, connectionId: str) -> JSONResponse:
    connection = sandbox_state(request).connections.get(connectionId)
    if connection is None:
        raise CodatError(404, f"Data connection {connectionId} not found")
    failure = await _parse(request, _Failure)
    life = lifecycle(request)
    life.connection_failed(connection, failure.status_code, failure.message)
    return JSONResponse(life.present.connection(connection))


@router.post("/connections/{connectionId}/status")
async def set_connection_status(request: Request, connectionId: str) -> JSONResponse:
    connection = sandbox_state(request).connections.get(connectionId)
    if connection is None:
        raise CodatError(404, f"Data connection {connectionId} not found")
    change = await _parse(request, _StatusChange)
    life = lifecycle(request)
    life.set_connection_status(connection, change.status)
    return JSONResponse(life.present.connection(connection))


@router.post("/connections/{connectionId}/accounts/{accountId}/disconnect")
async def disconnect_account(request: Request, connectionId: str, accountId: str) -> JSONResponse:
    connection = sandbox_state(request).connections.get(connectionId)
    account = connection.accounts.get(accountId) if connection else None
    if connection is None or account is None:
        raise CodatError(404, f"Source account {accountId} not found on connection {connectionId}")
    lifecycle(request).disconnect_account(connection, account)
    return JSONResponse(views.source_account(account))


@router.get("/connections/{connectionId}/accounts/{accountId}/bankTransactions")
async def recorded_bank_transactions(request: Request, connectionId: str, accountId: str) -> JSONResponse:
    return JSONResponse(sandbox_state(request).bank_transactions.get((connectionId, accountId), []))


@router.get("/webhooks/deliveries")
async def webhook_deliveries(request: Request) -> JSONResponse:
    return JSONResponse([d.to_json() for d in sandbox_state(request).webhooks.deliveries])


@router.post("/webhooks/{eventId}/resend", status_code=202)
async def resend_webhook(request: Request, eventId: str) -> JSONResponse:
    delivery = sandbox_state(request).resend(eventId)
    if delivery is None:
        raise CodatError(404, f"No webhook event {eventId} was sent")
    return JSONResponse(delivery.to_json(), status_code=202)
