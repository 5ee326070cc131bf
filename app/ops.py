"""Operations endpoints: liveness, readiness, and metrics.

`/livez` says the process answers; `/readyz` that this replica can serve: its database answers and its
schema is at the migrations' head. Codat and the Portal switches (`hcws` enabled, bank data types on) are
checked in the background, one Codat call per `ops.codat_check_interval_seconds` in a process, whatever
the probe rate: each call spends the client's daily Codat quota. Their last result is in `/readyz`'s body and
in `bff_codat_check_up`, and never makes the replica unready: with Codat down it still serves the stored
views and takes webhooks, and a load balancer that dropped every replica at once would serve nothing.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.clock import Clock
from app.codat import codat_deadline
from app.codat.client import CodatClient
from app.codat.exceptions import CodatError
from app.metrics import CODAT_CHECK_TIMESTAMP, CODAT_CHECK_UP, exposition
from app.migrate import head_revisions

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
CODAT_CHECK_DEADLINE_SECONDS = 5.0


async def _integration_check(codat: CodatClient, platform_key: str) -> str:
    integration = await codat.get_integration(platform_key)
    return "ok" if integration.enabled else f"failed: {platform_key} is not enabled in the Codat Portal"


async def _data_types_check(codat: CodatClient, platform_key: str) -> str:
    sync_settings = await codat.get_sync_settings()
    return "ok" if sync_settings.bank_feeds_enabled else "failed: enable bankAccounts and bankTransactions"


# One Codat call a round, the two Portal switches in turn: each is re-read every other interval (they change
# rarely), and Codat's reachability every interval, for one call's worth of quota.
PORTAL_CHECKS = (("integration", _integration_check), ("dataTypes", _data_types_check))
NOT_CHECKED = "not checked yet"


@dataclass
class CodatHealth:
    """The last Codat checks of this process, refreshed in the background when a probe finds them stale."""

    codat: CodatClient
    platform_key: str
    interval_seconds: float
    clock: Clock
    checks: dict[str, str] = field(
        default_factory=lambda: {"codat": NOT_CHECKED, "integration": NOT_CHECKED, "dataTypes": NOT_CHECKED}
    )
    checked_at: str | None = None
    _rounds: int = 0
    _started: float | None = None
    _task: "asyncio.Task[None] | None" = None

    def refresh_if_stale(self) -> None:
        """Start a check unless one ran less than the interval ago (or is running); never waits for it."""
        now = time.monotonic()
        if self._started is not None and now - self._started < self.interval_seconds:
            return
        self._started = now
        self._task = asyncio.create_task(self._check(), name="codat-health-check")

    async def wait(self) -> None:
        """Until the running check (if any) has finished: for tests and shutdown."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _check(self) -> None:
        name, check = PORTAL_CHECKS[self._rounds % len(PORTAL_CHECKS)]
        self._rounds += 1
        try:
            with codat_deadline(CODAT_CHECK_DEADLINE_SECONDS):
                self.checks[name] = await check(self.codat, self.platform_key)
            self.checks["codat"] = "ok"
        except CodatError as exc:
            self.checks["codat"] = f"failed: {type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001 - a bug here must show as a failed check, not vanish in a task
            log.exception("ops.codat_check_crashed")
            self.checks["codat"] = f"failed: {type(exc).__name__}"
        self.checked_at = self.clock.now().isoformat()
        for checked, result in self.checks.items():
            if result != NOT_CHECKED:
                CODAT_CHECK_UP.labels(checked).set(1 if result == "ok" else 0)
        CODAT_CHECK_TIMESTAMP.set(time.time())
        if any(result.startswith("failed") for result in self.checks.values()):
            log.warning("ops.codat_check_failed", extra={"checks": dict(self.checks)})


@router.get("/livez")
@router.get("/healthz", include_in_schema=False)  # the Dockerfile's HEALTHCHECK and older probes
async def livez() -> dict[str, str]:
    """The process is up and its event loop answers (Kubernetes liveness)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "This replica cannot serve; `checks` says why."}})
async def readyz(request: Request) -> JSONResponse:
    """This replica can serve: the database answers, its schema is at head. Codat's last background check is
    reported under `codat`, and does not decide readiness."""
    state = request.app.state
    health: CodatHealth = state.codat_health
    health.refresh_if_stale()
    checks = await _database_checks(state.sessionmaker)
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, Any] = {
        "status": "ready" if ready else "not_ready",
        "checks": checks,
        "codat": {"checks": health.checks, "checkedAt": health.checked_at},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def _database_checks(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """The database answers, and has the migrations this code needs (`bankfeeds-bff migrate` applies them)."""
    try:
        async with sessionmaker() as session:
            await session.execute(text("SELECT 1"))
            try:
                applied = set((await session.scalars(text("SELECT version_num FROM alembic_version"))).all())
            except Exception:  # noqa: BLE001 - no alembic_version table: never migrated
                applied = set()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the type says enough
        return {"database": f"failed: {type(exc).__name__}", "migrations": "unknown"}
    if applied != _head_revisions():
        needed = sorted(_head_revisions())
        return {"database": "ok", "migrations": f"failed: at {sorted(applied)}, needs {needed}: run migrate"}
    return {"database": "ok", "migrations": "ok"}


@cache
def _head_revisions() -> set[str]:
    return head_revisions()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
