"""The two Platform API reads the BFF's readiness check uses: the hcws integration and the sync settings."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.sandbox.api.route import CodatRoute
from app.sandbox.context import presenter
from app.sandbox.errors import CodatError
from app.sandbox.views import HCWS_KEY

router = APIRouter(route_class=CodatRoute)


@router.get("/integrations/{platformKey}", operation_id="get-integration")
async def get_integration(request: Request, platformKey: str) -> JSONResponse:
    if platformKey != HCWS_KEY:
        raise CodatError(404, f"No integration was found with platform key '{platformKey}'.")
    return JSONResponse(presenter(request).integration())


@router.get("/profile/syncSettings", operation_id="get-profile-syncSettings")
async def get_sync_settings(request: Request) -> JSONResponse:
    return JSONResponse(presenter(request).sync_settings())
