"""Production end-user tokens: RS256, checked against the identity provider's JWKS."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app.auth.tokens import TokenVerifier
from app.config import AuthSettings
from app.errors import Unauthorized

SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING_KEY.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "key-1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()


def token(key, claims: dict, kid: str = "key-1") -> str:  # type: ignore[no-untyped-def]
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def claims(**overrides: object) -> dict:
    return {
        "sub": "user-7",
        "aud": "bankfeeds-bff",
        "iss": "https://id.example",
        "org": "biz-7",
        "exp": int(time.time()) + 300,
        **overrides,
    }


@pytest.fixture
def verifier(jwks_url: str) -> TokenVerifier:
    return TokenVerifier(
        AuthSettings(
            jwt_algorithm="RS256", jwks_url=jwks_url, issuer="https://id.example", business_claim="org"
        )
    )


def test_a_token_signed_by_the_provider_names_the_business_from_the_configured_claim(verifier):
    user = verifier.end_user(token(SIGNING_KEY, claims()))

    assert (user.subject, user.business_id) == ("user-7", "biz-7")


@pytest.mark.parametrize(
    ("key", "overrides", "kid"),
    [
        (OTHER_KEY, {}, "key-1"),  # not the provider's key
        (SIGNING_KEY, {"iss": "https://evil.example"}, "key-1"),
        (SIGNING_KEY, {"aud": "another-api"}, "key-1"),
        (SIGNING_KEY, {"exp": int(time.time()) - 300}, "key-1"),
        (SIGNING_KEY, {"org": None}, "key-1"),
        (SIGNING_KEY, {}, "unknown-kid"),
    ],
)
def test_anything_else_is_refused(verifier, key, overrides, kid):
    with pytest.raises(Unauthorized):
        verifier.end_user(token(key, claims(**overrides), kid=kid))


def test_an_hs256_token_is_refused_when_rs256_is_configured(verifier):
    forged = jwt.encode(claims(), "a-shared-secret-that-is-long-enough-0123456789", algorithm="HS256")

    with pytest.raises(Unauthorized):
        verifier.end_user(forged)
