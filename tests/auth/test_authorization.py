"""Every endpoint refuses callers without the right token; a business never reaches another's data."""

import jwt
import pytest

from app.auth.tokens import mint_end_user_token, mint_service_token
from tests.factories import ACCOUNTS, register

SAMPLE_PATH_VALUES = {"{business_id}": "biz-1", "{account_id}": "acc-1"}
SAMPLE_BODIES = {
    "/internal/v1/businesses/{business_id}": {"name": "Acme", "country": "US"},
    "/internal/v1/businesses/{business_id}/accounts/{account_id}": ACCOUNTS["acc-1"],
    "/v1/bank-feed/accounts": {"accountIds": ["acc-1"]},
    "/v1/bank-feed/accounts/{account_id}": {"accountName": "x"},
}


def protected_routes(app) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """Every end-user and internal operation the API declares, with sample path values."""
    routes = []
    for template, operations in app.openapi()["paths"].items():
        if template.startswith(("/v1/", "/internal/")):
            path = template
            for name, value in SAMPLE_PATH_VALUES.items():
                path = path.replace(name, value)
            routes += [(method.upper(), path, template) for method in sorted(operations)]
    return routes


async def call(client, method: str, path: str, template: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return await client.request(method, path, json=SAMPLE_BODIES.get(template), headers=headers)


class TestEveryEndpoint:
    async def test_refuses_a_missing_or_bad_or_expired_token(self, app, client, auth_settings):
        expired = jwt.encode(
            {"sub": "u", "aud": auth_settings.audience, "business_id": "biz-1", "exp": 1},
            auth_settings.jwt_secret.get_secret_value(),
        )
        forged = jwt.encode(
            {"sub": "u", "aud": auth_settings.audience, "business_id": "biz-1", "exp": 2**31},
            "not-the-secret-but-just-as-long-0123456789abcdef",
        )
        routes = protected_routes(app)
        assert len(routes) >= 12

        for method, path, template in routes:
            for headers in (
                {},
                {"Authorization": "Bearer nonsense"},
                {"Authorization": f"Bearer {expired}"},
                {"Authorization": f"Bearer {forged}"},
                {"Authorization": "Basic dXNlcjpwYXNz"},
            ):
                response = await call(client, method, path, template, headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.json()["error"] == "unauthorized"

    async def test_end_user_tokens_do_not_open_internal_endpoints_nor_service_tokens_user_ones(
        self, app, client, auth_settings
    ):
        user = {"Authorization": f"Bearer {mint_end_user_token(auth_settings, 'biz-1')}"}
        service = {
            "Authorization": "Bearer "
            + mint_service_token(auth_settings, "svc", ["businesses:write", "bank-feed:read"])
        }

        for method, path, template in protected_routes(app):
            headers = user if path.startswith("/internal/") else service
            response = await call(client, method, path, template, headers)
            assert response.status_code == 401, (method, path)


class TestScopes:
    @pytest.mark.parametrize(
        ("method", "path", "template", "needed"),
        [
            (
                "PUT",
                "/internal/v1/businesses/biz-1",
                "/internal/v1/businesses/{business_id}",
                "businesses:write",
            ),
            (
                "PUT",
                "/internal/v1/businesses/biz-1/accounts/acc-1",
                "/internal/v1/businesses/{business_id}/accounts/{account_id}",
                "businesses:write",
            ),
            ("GET", "/internal/v1/businesses/biz-1/bank-feed", "", "bank-feed:read"),
        ],
    )
    async def test_a_service_without_the_scope_gets_a_403_naming_it(
        self, client, auth_settings, method, path, template, needed
    ):
        other_scopes = {"businesses:write", "bank-feed:read", "transactions:write"} - {needed}
        headers = {
            "Authorization": f"Bearer {mint_service_token(auth_settings, 'svc', sorted(other_scopes))}"
        }

        response = await call(client, method, path, template, headers)

        assert response.status_code == 403
        assert needed in response.json()["detail"]


class TestBusinessIsolation:
    async def test_a_user_sees_only_their_own_business(self, client, service_headers, user_headers):
        await register(client, service_headers(), "biz-a")
        await register(client, service_headers(), "biz-b", accounts={"acc-b": ACCOUNTS["acc-1"]})
        connected_a = (await client.post("/v1/bank-feed/connect", headers=user_headers("biz-a"))).json()

        view_b = (await client.get("/v1/bank-feed", headers=user_headers("biz-b"))).json()
        link_b = await client.get("/v1/bank-feed/link", headers=user_headers("biz-b"))
        rename_a_account_as_b = await client.patch(
            "/v1/bank-feed/accounts/acc-2", json={"accountName": "mine"}, headers=user_headers("biz-b")
        )
        connect_a_account_as_b = await client.post(
            "/v1/bank-feed/connect", json={"accountIds": ["acc-1"]}, headers=user_headers("biz-b")
        )
        credentials_b = await client.post("/v1/bank-feed/credentials", headers=user_headers("biz-b"))

        assert [a["accountId"] for a in view_b["accounts"]] == ["acc-b"]
        assert view_b["connection"] is None
        assert link_b.status_code == 409
        assert connected_a["linkUrl"] not in link_b.text
        assert rename_a_account_as_b.status_code == 404
        assert connect_a_account_as_b.status_code == 422
        assert credentials_b.status_code == 409
        view_a = (await client.get("/v1/bank-feed", headers=user_headers("biz-a"))).json()
        assert {a["accountName"] for a in view_a["accounts"]} == {"Operating checking", "Savings", "Card"}
