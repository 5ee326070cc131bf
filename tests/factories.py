"""Helpers the tests share: registering businesses, reading the sandbox as Codat's API sees it."""

import base64
import html
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from tests.conftest import TEST_API_KEY


def prod_settings_values() -> dict[str, Any]:
    """Everything prod requires (tests/cli/test_configuration.py lists it), each a harmless stand-in; callers
    override or drop what their test is about."""
    return {
        "environment": "prod",
        "database": {
            "url": "postgresql+asyncpg://bff@db/bff",
            "encryption_key": "cmVhbC1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg5YWI=",
        },
        "codat": {"api_key": "a-codat-key"},
        "auth": {
            "jwt_secret": "a-real-secret-0123456789abcdef0123456789",
            "issuer": "https://idp.example",
            "service_issuer": "https://services.example",
        },
        "webhooks": {"signing_secret": "whsec_c2VjcmV0"},
    }


ACCOUNTS = {
    "acc-1": {
        "name": "Operating checking",
        "accountType": "checking",
        "accountNumber": "000123456789",
        "routingNumber": "021000021",
        "currency": "USD",
        "balance": "4002.00",
    },
    "acc-2": {
        "name": "Savings",
        "accountType": "savings",
        "accountNumber": "000987654321",
        "routingNumber": "021000021",
        "currency": "USD",
        "balance": "0",
    },
    "acc-3": {
        "name": "Card",
        "accountType": "credit_card",
        "accountNumber": "4111000011112222",
        "currency": "USD",
        "balance": "-742.18",
    },
}


async def register(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    business_id: str,
    accounts=ACCOUNTS,
    country: str = "US",
) -> None:
    response = await client.put(
        f"/internal/v1/businesses/{business_id}",
        json={"name": f"{business_id} LLC", "country": country},
        headers=headers,
    )
    assert response.status_code in (200, 201), response.text
    for account_id, body in accounts.items():
        response = await client.put(
            f"/internal/v1/businesses/{business_id}/accounts/{account_id}", json=body, headers=headers
        )
        assert response.status_code in (200, 201), response.text


CODAT_AUTH = {"Authorization": "Basic " + base64.b64encode(TEST_API_KEY.encode()).decode()}


async def codat_get(client, path: str):  # type: ignore[no-untyped-def]
    response = await client.get(f"/sandbox{path}", headers=CODAT_AUTH)
    assert response.status_code == 200, response.text
    return response.json()


async def codat_accounts(client, connection_id: str) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    companies = (await codat_get(client, "/companies"))["results"]
    for company in companies:
        for connection in company.get("dataConnections") or []:
            if connection["id"] == connection_id:
                path = (
                    f"/companies/{company['id']}/connections/{connection_id}/connectionInfo/bankFeedAccounts"
                )
                return {a["id"]: a for a in await codat_get(client, path)}
    raise AssertionError(f"connection {connection_id} is not at the sandbox")


def otp_of(link_url: str) -> str:
    return parse_qs(urlparse(link_url).query)["otp"][0]


def link_base(link_url: str) -> str:
    return link_url.split("/start?", 1)[0]


async def get_credentials_on_link_page(client: httpx.AsyncClient, link_url: str) -> tuple[str, str]:
    """What the SMB does on Codat's Link page: open it, click Get credentials, read them."""
    page = await client.get(link_url)
    assert page.status_code == 200, page.text
    shown = await client.post(
        f"{link_base(link_url)}/credentials", data={"otp": otp_of(link_url), "lang": "en"}
    )
    assert shown.status_code == 200, shown.text
    username = re.search(r'id="credential-username">([^<]+)<', shown.text)
    password = re.search(r'id="credential-password">([^<]+)<', shown.text)
    assert username, shown.text
    assert password, shown.text
    return html.unescape(username.group(1)), html.unescape(password.group(1))


async def connect_in_quickbooks(
    client: httpx.AsyncClient, link_url: str, account_ids: list[str], feed_start: str = "2026-11-01"
) -> tuple[str, str]:
    """The SMB's whole trip: Link page, Get credentials, QuickBooks stand-in, pick accounts, a start date."""
    username, password = await get_credentials_on_link_page(client, link_url)
    done = await client.post(
        "/sandbox/qbo/connect",
        data={
            "username": username,
            "password": password,
            "account": account_ids,
            "feedStartDate": feed_start,
        },
    )
    assert done.status_code == 200, done.text
    return username, password


async def disconnect_in_quickbooks(
    client: httpx.AsyncClient, credentials: tuple[str, str], account_id: str
) -> None:
    username, password = credentials
    done = await client.post(
        "/sandbox/qbo/disconnect", data={"username": username, "password": password, "account": account_id}
    )
    assert done.status_code == 200, done.text
    # QuickBooks tells Codat 10 days later (the sandbox's disconnect lag, on its clock).
    moved = await client.post("/sandbox/_sandbox/clock/advance", json={"seconds": 10 * 86400})
    assert moved.status_code == 200, moved.text
