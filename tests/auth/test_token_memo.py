"""TokenVerifier remembers the tokens it verified, until they expire, within a bound; never a refused one."""

import time

import jwt
import pytest

import app.auth.tokens as tokens
from app.auth.tokens import TokenVerifier, mint_end_user_token, mint_service_token
from app.errors import Unauthorized


@pytest.fixture
def decodes(monkeypatch):  # type: ignore[no-untyped-def]
    """How many times a signature was actually checked."""
    calls: list[str] = []
    decode = jwt.decode

    def counted(token, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(tokens.jwt, "decode", counted)
    return calls


def test_a_token_is_checked_once_then_remembered(auth_settings, decodes):
    verifier = TokenVerifier(auth_settings)
    token = mint_end_user_token(auth_settings, "biz-1")

    users = [verifier.end_user(token) for _ in range(3)]

    assert {u.business_id for u in users} == {"biz-1"}
    assert len(decodes) == 1


@pytest.mark.parametrize(
    ("lifetime", "forgotten_after"),
    [
        (60, 60 + tokens.LEEWAY_SECONDS),
        (86400, tokens.REMEMBER_SECONDS),
    ],  # at expiry (jwt's leeway), or sooner
)
def test_a_remembered_token_is_checked_again_once_it_expires_or_after_a_while(
    auth_settings, monkeypatch, decodes, lifetime, forgotten_after
):
    verifier = TokenVerifier(auth_settings)
    now = time.time()
    token = jwt.encode(
        {
            "sub": "u",
            "aud": auth_settings.audience,
            "iss": auth_settings.issuer,
            "business_id": "biz-1",
            "exp": int(now) + lifetime,
        },
        auth_settings.jwt_secret.get_secret_value(),
    )
    verifier.end_user(token)

    monkeypatch.setattr(tokens.time, "time", lambda: now + forgotten_after - 1)
    verifier.end_user(token)
    assert len(decodes) == 1
    monkeypatch.setattr(tokens.time, "time", lambda: int(now) + forgotten_after + 1)
    verifier.end_user(token)  # jwt.decode checks it again, on its own clock
    assert len(decodes) == 2


def test_refused_tokens_are_not_remembered_and_kinds_do_not_mix(auth_settings, decodes):
    verifier = TokenVerifier(auth_settings)
    user_token = mint_end_user_token(auth_settings, "biz-1")
    service_token = mint_service_token(auth_settings, "svc", ["bank-feed:read"])
    verifier.end_user(user_token)
    verifier.service(service_token)

    for _ in range(2):
        with pytest.raises(Unauthorized):
            verifier.service(user_token)
        with pytest.raises(Unauthorized):
            verifier.end_user(service_token)
        with pytest.raises(Unauthorized):
            verifier.end_user("nonsense")

    assert len(decodes) == 2 + 3 * 2


def test_at_most_so_many_tokens_are_remembered(auth_settings, monkeypatch):
    monkeypatch.setattr(tokens, "REMEMBER_AT_MOST", 3)
    verifier = TokenVerifier(auth_settings)

    for n in range(10):
        verifier.end_user(mint_end_user_token(auth_settings, f"biz-{n}"))

    assert [principal.business_id for principal, _ in verifier._verified.values()] == [
        "biz-7",
        "biz-8",
        "biz-9",
    ]
