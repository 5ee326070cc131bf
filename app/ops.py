"""Operations endpoints: liveness, readiness (database, Codat, `hcws`, data types) and metrics."""

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.codat import codat_deadline
from app.codat.client import CodatClient
from app.codat.exceptions import CodatError

router = APIRouter(tags=["operations"])
READINESS_DEADLINE_SECONDS = 5.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not ready; `checks` says which."}})
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers, Codat answers, `hcws` and the bank data types are enabled."""
    state = request.app.state
    checks = {"database": await _database_ready(state.sessionmaker)}
    checks.update(await _codat_ready(state.codat, state.settings.codat.platform_key))
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


async def _database_ready(sessionmaker: Any) -> str:
    try:
        async with sessionmaker() as session:
            await session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the type says enough
        return f"failed: {type(exc).__name__}"


async def _codat_ready(codat: CodatClient, platform_key: str) -> dict[str, str]:
    try:
        with codat_deadline(READINESS_DEADLINE_SECONDS):
            integration = await codat.get_integration(platform_key)
            sync_settings = await codat.get_sync_settings()
    except CodatError as exc:
        return {"codat": f"failed: {type(exc).__name__}"}
    return {
        "codat": "ok",
        "integration": "ok"
        if integration.enabled
        else f"failed: {platform_key} is not enabled in the Codat Portal",
        "dataTypes": "ok"
        if sync_settings.bank_feeds_enabled
        else "failed: enable bankAccounts and bankTransactions",
    }


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
