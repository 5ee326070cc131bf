"""Verify and (for dev) mint the JWTs that end users and internal services present.

End-user tokens come from the fintech's identity provider: HS256 with a shared secret, or RS256 checked
against its JWKS. Service tokens are JWTs for a second audience, with a space-separated ``scope`` claim.
"""

import base64
import time
from collections import OrderedDict
from functools import cached_property
from typing import Any

import jwt

from app.auth.principals import EndUser, Service
from app.config import AuthSettings
from app.errors import Unauthorized

DEV_TOKEN_LIFETIME_SECONDS = 30 * 24 * 3600
LEEWAY_SECONDS = 30
# A verified token is remembered (per process) until it expires, but re-checked at least this often, so that a
# key withdrawn from the identity provider's JWKS stops working soon even for tokens already seen.
REMEMBER_SECONDS = 300


class TokenVerifier:
    """Verifies tokens, and remembers the ones it verified until they expire (a bounded LRU)."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._verified: OrderedDict[tuple[str, str], tuple[EndUser | Service, float]] = OrderedDict()

    def may_block(self, token: str) -> bool:
        """Whether verifying `token` may wait on the network (fetching the identity provider's JWKS)."""
        known = ("user", token) in self._verified or ("service", token) in self._verified
        return self._settings.jwks_url is not None and not known

    def remembered_end_user(self, token: str) -> EndUser | None:
        """The end user of `token` if it was verified already and has not expired; None otherwise."""
        return self._remembered("user", token)  # type: ignore[return-value]

    def _remembered(self, kind: str, token: str) -> EndUser | Service | None:
        # Tolerates being called from worker threads too: every step is one atomic dict operation.
        entry = self._verified.get((kind, token))
        if entry is None:
            return None
        if entry[1] <= time.time():
            self._verified.pop((kind, token), None)
            return None
        try:
            self._verified.move_to_end((kind, token))
        except KeyError:  # forgotten by another thread meanwhile
            pass
        return entry[0]

    def _remember(self, kind: str, token: str, principal: EndUser | Service, claims: dict[str, Any]) -> None:
        # The same instant jwt.decode would start refusing it (exp plus leeway), or sooner.
        until = min(claims["exp"] + LEEWAY_SECONDS, time.time() + REMEMBER_SECONDS)
        self._verified[(kind, token)] = (principal, until)
        if len(self._verified) > self._settings.remembered_tokens:
            self._verified.popitem(last=False)

    @cached_property
    def _jwks(self) -> jwt.PyJWKClient | None:
        # PyJWKClient caches the provider's keys; it is only built when a JWKS URL is configured.
        return jwt.PyJWKClient(self._settings.jwks_url) if self._settings.jwks_url else None

    def _key(self, token: str) -> Any:
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key
        return self._secret

    @cached_property
    def _secret(self) -> jwt.PyJWK:
        # Checked and prepared once: given the bare secret, jwt.decode re-checks that it is no PEM, SSH or DER
        # key on every call, a fifth of the cost of verifying a token.
        assert self._settings.jwt_secret is not None
        secret = self._settings.jwt_secret.get_secret_value().encode()
        return jwt.PyJWK({"kty": "oct", "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}, "HS256")

    def _claims(self, token: str, audience: str) -> dict[str, Any]:
        try:
            return jwt.decode(  # type: ignore[no-any-return]
                token,
                self._key(token),
                algorithms=[self._settings.jwt_algorithm],
                audience=audience,
                issuer=self._settings.issuer,
                options={"require": ["exp", "sub", "aud"]},
                leeway=LEEWAY_SECONDS,
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthorized("The bearer token is missing, expired or not valid for this API.") from exc

    def end_user(self, token: str) -> EndUser:
        if (known := self._remembered("user", token)) is not None:
            return known  # type: ignore[return-value]
        claims = self._claims(token, self._settings.audience)
        business_id = claims.get(self._settings.business_claim)
        if not isinstance(business_id, str) or not business_id:
            raise Unauthorized(f"The token has no `{self._settings.business_claim}` claim naming a business.")
        user = EndUser(subject=str(claims["sub"]), business_id=business_id)
        self._remember("user", token, user, claims)
        return user

    def service(self, token: str) -> Service:
        if (known := self._remembered("service", token)) is not None:
            return known  # type: ignore[return-value]
        claims = self._claims(token, self._settings.service_audience)
        scopes = claims.get("scope", "")
        if not isinstance(scopes, str):
            raise Unauthorized("The token's `scope` claim must be a space-separated string.")
        service = Service(name=str(claims["sub"]), scopes=frozenset(scopes.split()))
        self._remember("service", token, service, claims)
        return service


def _sign(settings: AuthSettings, claims: dict[str, Any]) -> str:
    assert settings.jwt_secret is not None, "dev tokens need the HS256 secret"
    now = int(time.time())
    payload = {"iat": now, "exp": now + DEV_TOKEN_LIFETIME_SECONDS, **claims}
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def mint_end_user_token(settings: AuthSettings, business_id: str, subject: str = "demo-user") -> str:
    return _sign(settings, {"sub": subject, "aud": settings.audience, settings.business_claim: business_id})


def mint_service_token(settings: AuthSettings, name: str, scopes: list[str]) -> str:
    return _sign(settings, {"sub": name, "aud": settings.service_audience, "scope": " ".join(scopes)})
