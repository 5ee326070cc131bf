"""Dependencies of the onboarding endpoints."""

from typing import Annotated

from fastapi import Depends, FastAPI, Request

from app.onboarding.service import OnboardingService


async def get_onboarding_service(request: Request) -> OnboardingService:
    # async: FastAPI runs a plain `def` dependency on its thread pool, a thread hop on every request.
    return onboarding_service(request.app)


def onboarding_service(app: FastAPI) -> OnboardingService:
    state = app.state
    return OnboardingService(
        state.sessionmaker,
        state.codat,
        state.settings.codat,
        state.clock,
        state.single_flight,
        state.changes,
        state.limiter,
    )


ServiceDep = Annotated[OnboardingService, Depends(get_onboarding_service)]
