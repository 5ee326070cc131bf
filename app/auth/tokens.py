"""Verify and (for dev) mint the JWTs that end users and internal services present.

End-user tokens come from the fintech's identity provider: HS256 with a shared secret, or RS256 checked
against its JWKS. Service tokens are JWTs for a second audience, with a space-separated ``scope`` claim.
"""

import time
from functools import cached_property
from typing import Any

import jwt

from app.auth.principals import EndUser, Service
from app.config import AuthSettings
from app.errors import Unauthorized

DEV_TOKEN_LIFETIME_SECONDS = 30 * 24 * 3600


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings

    @cached_property
    def _jwks(self) -> jwt.PyJWKClient | None:
        # PyJWKClient caches the provider's keys; it is only built when a JWKS URL is configured.
        return jwt.PyJWKClient(self._settings.jwks_url) if self._settings.jwks_url else None

    def _key(self, token: str) -> Any:
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key
        assert self._settings.jwt_secret is not None
        return self._settings.jwt_secret.get_secret_value()

    def _claims(self, token: str, audience: str) -> dict[str, Any]:
        try:
            return jwt.decode(  # type: ignore[no-any-return]
                token,
                self._key(token),
                algorithms=[self._settings.jwt_algorithm],
                audience=audience,
                issuer=self._settings.issuer,
                options={"require": ["exp", "sub", "aud"]},
                leeway=30,
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthorized("The bearer token is missing, expired or not valid for this API.") from exc

    def end_user(self, token: str) -> EndUser:
        claims = self._claims(token, self._settings.audience)
        business_id = claims.get(self._settings.business_claim)
        if not isinstance(business_id, str) or not business_id:
            raise Unauthorized(f"The token has no `{self._settings.business_claim}` claim naming a business.")
        return EndUser(subject=str(claims["sub"]), business_id=business_id)

    def service(self, token: str) -> Service:
        claims = self._claims(token, self._settings.service_audience)
        scopes = claims.get("scope", "")
        if not isinstance(scopes, str):
            raise Unauthorized("The token's `scope` claim must be a space-separated string.")
        return Service(name=str(claims["sub"]), scopes=frozenset(scopes.split()))


def _sign(settings: AuthSettings, claims: dict[str, Any]) -> str:
    assert settings.jwt_secret is not None, "dev tokens need the HS256 secret"
    now = int(time.time())
    payload = {"iat": now, "exp": now + DEV_TOKEN_LIFETIME_SECONDS, **claims}
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def mint_end_user_token(settings: AuthSettings, business_id: str, subject: str = "demo-user") -> str:
    return _sign(settings, {"sub": subject, "aud": settings.audience, settings.business_claim: business_id})


def mint_service_token(settings: AuthSettings, name: str, scopes: list[str]) -> str:
    return _sign(settings, {"sub": name, "aud": settings.service_audience, "scope": " ".join(scopes)})
