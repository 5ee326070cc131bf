"""The two Platform API reads the BFF's readiness check uses: an integration (by platform key) and the sync
settings."""

from fastapi import APIRouter, Request

from app.sandbox.api.route import CodatRoute
from app.sandbox.context import presenter
from app.sandbox.errors import CodatError
from app.sandbox.platforms import PROFILES
from app.sandbox.responses import JSONResponse

router = APIRouter(route_class=CodatRoute)


@router.get("/integrations/{platformKey}", operation_id="get-integration")
async def get_integration(request: Request, platformKey: str) -> JSONResponse:
    platform = PROFILES.get(platformKey)
    if platform is None:
        raise CodatError(404, f"No integration was found with platform key '{platformKey}'.")
    return JSONResponse(presenter(request).integration(platform))


@router.get("/profile/syncSettings", operation_id="get-profile-syncSettings")
async def get_sync_settings(request: Request) -> JSONResponse:
    return JSONResponse(presenter(request).sync_settings())
