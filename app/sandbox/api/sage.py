"""Sage Bank Feeds' two ways to authorize: the OTP the SMB types into Sage (``POST …/bankFeeds/otp``), and
``PUT …/authorization`` with the ``authorizationId`` Sage gave the fintech's login page. Either way the
connection turns Linked only once the SMB picks accounts in Sage (``app.sandbox.pages.sage``)."""

import secrets

from fastapi import APIRouter, Request

from app.sandbox.api.connections import CONNECTION, require_connection
from app.sandbox.api.route import CodatRoute
from app.sandbox.api.schemas import read_json
from app.sandbox.clock import iso
from app.sandbox.context import presenter, sandbox_state
from app.sandbox.errors import invalid
from app.sandbox.models import Connection
from app.sandbox.platforms import SAGE, profile
from app.sandbox.responses import JSONResponse

router = APIRouter(route_class=CodatRoute)

_VALIDATOR = "ConnectionValidator"


def _require_sage(connection: Connection, operation: str) -> None:
    platform = profile(connection.platform_key)
    if platform is not SAGE:
        raise invalid(
            f"{operation} is only for Sage Bank Feeds connections; this one is {platform.name}.",
            item_id=None,
            validator=_VALIDATOR,
        )


@router.post(CONNECTION + "/bankFeeds/otp", operation_id="generate-otp")
async def generate_otp(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    state = sandbox_state(request)
    connection = require_connection(state, companyId, connectionId)
    _require_sage(connection, "A one-time password")
    # Each call replaces the previous OTP: the one the SMB was last shown is the one Sage accepts.
    connection.sage.otp = state.new_otp()
    return JSONResponse({"otp": connection.sage.otp.code, "expiry": iso(connection.sage.otp.expires_at)})


@router.put(CONNECTION + "/authorization", operation_id="update-connection-authorization")
async def update_connection_authorization(
    request: Request, companyId: str, connectionId: str
) -> JSONResponse:
    state = sandbox_state(request)
    connection = require_connection(state, companyId, connectionId)
    _require_sage(connection, "Updating the authorization")
    body = await read_json(request)
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise invalid("The body must be a JSON object of strings.", item_id=None, validator=_VALIDATOR)
    offered = body.get("authorizationId", "")
    known = any(secrets.compare_digest(offered, issued) for issued in state.sage_authorization_ids)
    if not known:
        # Codat declares no 400 here; an authorizationId Sage never issued (or already used) is not found.
        raise invalid(
            "No authorization was found with this authorizationId: use the authId Sage passed to your login "
            "page, once.",
            item_id="authorizationId",
            validator=_VALIDATOR,
            status_code=404,
        )
    state.sage_authorization_ids.discard(offered)
    connection.sage.authorization_id = offered
    return JSONResponse(presenter(request).connection(connection))
