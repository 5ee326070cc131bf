"""End-user and service tokens are for one surface each: audience and issuer both required, never both."""

import time

import jwt
import pytest

from app.auth.tokens import mint_end_user_token, mint_service_token
from app.config import Settings
from tests.factories import prod_settings_values


def signed(settings, **claims) -> dict[str, str]:  # type: ignore[no-untyped-def]
    secret = settings.auth.jwt_secret.get_secret_value()
    token = jwt.encode({"sub": "x", "exp": int(time.time()) + 600, **claims}, secret, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def both_audiences(settings, issuer: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    auth = settings.auth
    return {
        "aud": [auth.audience, auth.service_audience],
        "iss": issuer,
        "business_id": "biz-1",
        "scope": "bank-feed:read businesses:write",
    }


async def test_a_token_for_one_surface_is_refused_on_the_other(client, settings, business):
    user = {"Authorization": f"Bearer {mint_end_user_token(settings.auth, business)}"}
    service = {"Authorization": f"Bearer {mint_service_token(settings.auth, 's', ['bank-feed:read'])}"}

    assert (await client.get("/v1/bank-feed", headers=user)).status_code == 200
    assert (
        await client.get(f"/internal/v1/businesses/{business}/bank-feed", headers=service)
    ).status_code == 200
    assert (await client.get("/v1/bank-feed", headers=service)).status_code == 401
    assert (
        await client.get(f"/internal/v1/businesses/{business}/bank-feed", headers=user)
    ).status_code == 401


@pytest.mark.parametrize("issuer_of", ["user", "service"])
async def test_a_token_carrying_both_audiences_is_refused_on_both(client, settings, business, issuer_of):
    issuer = settings.auth.issuer if issuer_of == "user" else settings.auth.service_issuer
    headers = signed(settings, **both_audiences(settings, issuer))

    assert (await client.get("/v1/bank-feed", headers=headers)).status_code == 401
    internal = await client.get(f"/internal/v1/businesses/{business}/bank-feed", headers=headers)
    assert internal.status_code == 401


async def test_the_issuer_is_required_and_checked(client, settings, business):
    auth = settings.auth
    no_issuer = signed(settings, aud=auth.audience, business_id=business)
    wrong_issuer = signed(settings, aud=auth.audience, business_id=business, iss=auth.service_issuer)
    service_without = signed(settings, aud=auth.service_audience, scope="bank-feed:read")

    assert (await client.get("/v1/bank-feed", headers=no_issuer)).status_code == 401
    assert (await client.get("/v1/bank-feed", headers=wrong_issuer)).status_code == 401
    internal = await client.get(f"/internal/v1/businesses/{business}/bank-feed", headers=service_without)
    assert internal.status_code == 401


async def test_service_tokens_may_have_their_own_key(database_url):
    settings = Settings(
        environment="test", auth={"service_jwt_secret": "another-secret-for-services-0123456789"}
    )
    from app.auth.tokens import TokenVerifier

    verifier = TokenVerifier(settings.auth)
    service_token = mint_service_token(settings.auth, "s", ["bank-feed:read"])
    forged = jwt.encode(
        {
            "sub": "s",
            "aud": settings.auth.service_audience,
            "iss": settings.auth.service_issuer,
            "exp": int(time.time()) + 60,
            "scope": "bank-feed:read",
        },
        settings.auth.jwt_secret.get_secret_value(),  # the users' key
        algorithm="HS256",
    )

    assert verifier.service(service_token).name == "s"
    with pytest.raises(Exception, match="not valid"):
        verifier.service(forged)


def test_prod_needs_two_different_issuers():
    base = prod_settings_values()
    base["auth"] = {"jwt_secret": base["auth"]["jwt_secret"]}  # no issuers
    with pytest.raises(ValueError, match="AUTH__ISSUER"):
        Settings(**base)
    with pytest.raises(ValueError, match="AUTH__ISSUER"):
        Settings(**{**base, "auth": {**base["auth"], "issuer": "idp", "service_issuer": "idp"}})
    assert Settings(**{**base, "auth": {**base["auth"], "issuer": "idp", "service_issuer": "svc"}})
