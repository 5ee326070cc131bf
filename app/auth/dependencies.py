"""``Annotated`` dependencies that say what an endpoint needs from its caller."""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.principals import EndUser, Service
from app.auth.tokens import TokenVerifier
from app.errors import Forbidden, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="JWT from the identity provider, or a service token")


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise Unauthorized("A bearer token is required.", headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials


def _verifier(request: Request) -> TokenVerifier:
    return request.app.state.token_verifier  # type: ignore[no-any-return]


def current_end_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> EndUser:
    return _verifier(request).end_user(_token(credentials))


def require_scopes(*scopes: str) -> Callable[..., Service]:
    def current_service(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Service:
        service = _verifier(request).service(_token(credentials))
        missing = sorted(set(scopes) - service.scopes)
        if missing:
            raise Forbidden(f"The service token lacks the scope(s): {', '.join(missing)}.")
        return service

    return current_service


CurrentUser = Annotated[EndUser, Depends(current_end_user)]
BusinessesWriter = Annotated[Service, Depends(require_scopes("businesses:write"))]
BankFeedReader = Annotated[Service, Depends(require_scopes("bank-feed:read"))]
