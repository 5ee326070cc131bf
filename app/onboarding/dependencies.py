"""Dependencies of the onboarding endpoints."""

from typing import Annotated

from fastapi import Depends, Path, Request

from app.onboarding.service import OnboardingService


def get_onboarding_service(request: Request) -> OnboardingService:
    state = request.app.state
    return OnboardingService(
        state.sessionmaker, state.codat, state.settings.codat, state.clock, state.single_flight
    )


ServiceDep = Annotated[OnboardingService, Depends(get_onboarding_service)]
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
