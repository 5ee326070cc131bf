"""``Annotated`` dependencies that say what an endpoint needs from its caller."""

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.principals import EndUser, Service
from app.auth.tokens import TokenVerifier
from app.errors import Forbidden, Unauthorized

P = TypeVar("P", EndUser, Service)
_bearer = HTTPBearer(auto_error=False, description="JWT from the identity provider, or a service token")


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise Unauthorized("A bearer token is required.", headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials


def _verifier(request: Request) -> TokenVerifier:
    return request.app.state.token_verifier  # type: ignore[no-any-return]


async def _verify(verifier: TokenVerifier, verify: Callable[[str], P], token: str) -> P:
    """On the event loop when that cannot block: a worker thread costs more than checking a token already seen
    (a dictionary look-up) or an HS256 signature; only a JWKS fetch from the identity provider may block."""
    if verifier.may_block(token):
        return await run_in_threadpool(verify, token)
    return verify(token)


async def current_end_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> EndUser:
    verifier = _verifier(request)
    user = await _verify(verifier, verifier.end_user, _token(credentials))
    request.state.business_id = user.business_id  # for the access log line
    return user


def require_scopes(*scopes: str) -> Callable[..., Service]:
    async def current_service(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Service:
        verifier = _verifier(request)
        service = await _verify(verifier, verifier.service, _token(credentials))
        missing = sorted(set(scopes) - service.scopes)
        if missing:
            raise Forbidden(f"The service token lacks the scope(s): {', '.join(missing)}.")
        return service

    return current_service


CurrentUser = Annotated[EndUser, Depends(current_end_user)]
BusinessesWriter = Annotated[Service, Depends(require_scopes("businesses:write"))]
BankFeedReader = Annotated[Service, Depends(require_scopes("bank-feed:read"))]
