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
from jwt.algorithms import HMACAlgorithm
from pydantic import SecretStr

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
        known = self._remembered("user", token)
        return known if isinstance(known, EndUser) else None

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

    def _key(self, token: str, surface: str) -> Any:
        if surface == "service" and self._settings.service_jwt_secret is not None:
            return self._settings.service_jwt_secret.get_secret_value()
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key
        return self._secret

    @cached_property
    def _secret(self) -> jwt.PyJWK:
        assert self._settings.jwt_secret is not None
        return _PreparedSecret(self._settings.jwt_secret.get_secret_value().encode())

    def _claims(self, token: str, surface: str) -> dict[str, Any]:
        """The claims of a token for one surface ("user" or "service"): its own audience and issuer, and not
        the other surface's audience (a token carrying both would otherwise pass on both)."""
        settings = self._settings
        audience, issuer, other = (
            (settings.audience, settings.issuer, settings.service_audience)
            if surface == "user"
            else (settings.service_audience, settings.service_issuer, settings.audience)
        )
        separate_key = surface == "service" and settings.service_jwt_secret is not None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key(token, surface),
                algorithms=["HS256"] if separate_key else [settings.jwt_algorithm],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "sub", "aud", *(["iss"] if issuer else [])]},
                leeway=LEEWAY_SECONDS,
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthorized("The bearer token is missing, expired or not valid for this API.") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if other in audiences:
            raise Unauthorized("The bearer token is not valid for this API: it names more than one audience.")
        return claims

    def end_user(self, token: str) -> EndUser:
        if isinstance(known := self._remembered("user", token), EndUser):
            return known
        claims = self._claims(token, "user")
        business_id = claims.get(self._settings.business_claim)
        if not isinstance(business_id, str) or not business_id:
            raise Unauthorized(f"The token has no `{self._settings.business_claim}` claim naming a business.")
        user = EndUser(subject=str(claims["sub"]), business_id=business_id)
        self._remember("user", token, user, claims)
        return user

    def service(self, token: str) -> Service:
        if isinstance(known := self._remembered("service", token), Service):
            return known
        claims = self._claims(token, "service")
        scopes = claims.get("scope", "")
        if not isinstance(scopes, str):
            raise Unauthorized("The token's `scope` claim must be a space-separated string.")
        service = Service(name=str(claims["sub"]), scopes=frozenset(scopes.split()))
        self._remember("service", token, service, claims)
        return service


class _PreparedHMAC(HMACAlgorithm):
    """HS256 whose key is checked and prepared once. PyJWT prepares the key again on every decode (is it a
    PEM, SSH or DER key in disguise? JSON?), which was a third of the cost of verifying a token; the outcome
    for the same key never changes, so it is kept. Any other key is prepared as PyJWT does."""

    def __init__(self, key: bytes) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._key = key
        self._prepared = super().prepare_key(key)
        self._length_warning = super().check_key_length(self._prepared)

    def prepare_key(self, key: str | bytes) -> bytes:
        return self._prepared if key is self._key else super().prepare_key(key)

    def check_key_length(self, key: bytes) -> str | None:
        return self._length_warning if key is self._prepared else super().check_key_length(key)


class _PreparedSecret(jwt.PyJWK):
    """The HS256 secret as a JWK (so jwt.decode accepts HS256 only for it), prepared once."""

    def __init__(self, secret: bytes) -> None:
        super().__init__({"kty": "oct", "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}, "HS256")
        self.Algorithm = _PreparedHMAC(self.key)


def _sign(claims: dict[str, Any], secret: SecretStr | None) -> str:
    assert secret is not None, "dev tokens need the HS256 secret"
    now = int(time.time())
    payload = {"iat": now, "exp": now + DEV_TOKEN_LIFETIME_SECONDS, **claims}
    return jwt.encode(payload, secret.get_secret_value(), algorithm="HS256")


def mint_end_user_token(settings: AuthSettings, business_id: str, subject: str = "demo-user") -> str:
    claims = {"sub": subject, "aud": settings.audience, settings.business_claim: business_id}
    if settings.issuer:
        claims["iss"] = settings.issuer
    return _sign(claims, settings.jwt_secret)


def mint_service_token(settings: AuthSettings, name: str, scopes: list[str]) -> str:
    claims = {"sub": name, "aud": settings.service_audience, "scope": " ".join(scopes)}
    if settings.service_issuer:
        claims["iss"] = settings.service_issuer
    return _sign(claims, settings.service_jwt_secret or settings.jwt_secret)
