"""Connections: create (a platform of ``app.sandbox.platforms``), list, get, unlink, delete. Reading one
re-mints a lapsed link OTP."""

from fastapi import APIRouter, Request, Response

from app.sandbox.api import query
from app.sandbox.api.companies import require_company
from app.sandbox.api.paging import Paging
from app.sandbox.api.route import CodatRoute
from app.sandbox.api.schemas import ConnectionRequest, ConnectionUpdate, parse_body
from app.sandbox.context import lifecycle, presenter, sandbox_state
from app.sandbox.errors import CodatError, invalid
from app.sandbox.models import Connection, ConnectionStatus
from app.sandbox.platforms import PROFILES, profile
from app.sandbox.responses import JSONResponse
from app.sandbox.state import SandboxState

router = APIRouter(route_class=CodatRoute)

CONNECTION = "/companies/{companyId}/connections/{connectionId}"


def require_connection(state: SandboxState, company_id: str, connection_id: str) -> Connection:
    require_company(state, company_id)
    connection = state.find_connection(company_id, connection_id)
    if connection is None:
        raise CodatError(404, f"Data connection {connection_id} not found")
    return connection


@router.post("/companies/{companyId}/connections", operation_id="create-connection")
async def create_connection(request: Request, companyId: str) -> JSONResponse:
    state = sandbox_state(request)
    company = require_company(state, companyId)
    body = await parse_body(request, ConnectionRequest, validator="ConnectionValidator")
    _require_enabled_integration(state, body.platform_key)
    connection = Connection(
        state.new_id(), company.id, state.clock.now(), state.new_otp(), platform_key=body.platform_key
    )
    state.add_connection(company, connection)
    life = lifecycle(request)
    life.connection_created(connection)
    return JSONResponse(life.present.connection(connection))


def _require_enabled_integration(state: SandboxState, platform_key: str) -> None:
    # Codat declares no 400 for this operation, yet an unknown key is a bad request, not a missing resource;
    # a known but disabled integration is a 403: this client may not use it until it is enabled in the Portal.
    if platform_key not in PROFILES:
        raise invalid(
            f"No integration was found with platform key '{platform_key}'.",
            item_id="platformKey",
            validator="ConnectionValidator",
        )
    if not state.portal.enabled(platform_key):
        raise CodatError(403, f"The integration '{platform_key}' is not enabled for this client.")


@router.get("/companies/{companyId}/connections", operation_id="list-connections")
async def list_connections(request: Request, companyId: str) -> JSONResponse:
    paging = Paging.from_request(request)
    company = require_company(sandbox_state(request), companyId)
    present = presenter(request)
    path = f"/companies/{company.id}/connections"
    connections = query.from_request(request, list(company.connections.values()), CONNECTION_FIELDS.get)
    return JSONResponse(paging.envelope(connections, present.connection, path))


@router.get(CONNECTION, operation_id="get-connection")
async def get_connection(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    state = sandbox_state(request)
    connection = require_connection(state, companyId, connectionId)
    # Codat's docs: Get connection "returns a linkUrl with a new OTP" (List returns the current one).
    state.mint_otp(connection)
    return JSONResponse(presenter(request).connection(connection))


@router.patch(CONNECTION, operation_id="unlink-connection")
async def unlink_connection(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    connection = require_connection(sandbox_state(request), companyId, connectionId)
    await parse_body(request, ConnectionUpdate, validator="ConnectionValidator")
    if connection.status is not ConnectionStatus.linked:
        raise invalid(
            f"Only Linked connections can be unlinked; this one is {connection.status.value}.",
            item_id="status",
            validator="ConnectionValidator",
        )
    life = lifecycle(request)
    life.set_connection_status(connection, ConnectionStatus.unlinked)
    return JSONResponse(life.present.connection(connection))


@router.delete(CONNECTION, operation_id="delete-connection")
async def delete_connection(request: Request, companyId: str, connectionId: str) -> Response:
    state = sandbox_state(request)
    connection = require_connection(state, companyId, connectionId)
    lifecycle(request).connection_deleted(connection)
    state.remove_connection(connection)
    return Response(status_code=200)


CONNECTION_FIELDS: dict[str, query.Field[Connection]] = {
    "id": query.Field(query.Kind.string, lambda c: c.id),
    "integrationId": query.Field(query.Kind.string, lambda c: profile(c.platform_key).integration_id),
    "integrationKey": query.Field(query.Kind.string, lambda c: c.platform_key),
    "sourceId": query.Field(query.Kind.string, lambda c: profile(c.platform_key).source_id),
    "sourceType": query.Field(query.Kind.string, lambda _: "BankFeed"),
    "platformName": query.Field(query.Kind.string, lambda c: profile(c.platform_key).name),
    "status": query.Field(query.Kind.string, lambda c: c.status.value),
    "created": query.Field(query.Kind.date, lambda c: c.created),
    "lastSync": query.Field(query.Kind.date, lambda c: None),
}
