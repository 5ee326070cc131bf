import httpx
import pytest

ACCOUNTS = {
    "acc-1": {"name": "Operating checking", "accountType": "checking", "accountNumber": "000123456789",
              "routingNumber": "021000021", "currency": "USD", "balance": "4002.00"},
    "acc-2": {"name": "Savings", "accountType": "savings", "accountNumber": "000987654321",
              "routingNumber": "021000021", "currency": "USD", "balance": "0"},
    "acc-3": {"name": "Card", "accountType": "credit_card", "accountNumber": "4111000011112222",
              "currency": "USD", "balance": "-742.18"},
}


async def register(client: httpx.AsyncClient, headers: dict[str, str], business_id: str, accounts=ACCOUNTS,
                   country: str = "US") -> None:
    response = await client.put(f"/internal/v1/businesses/{business_id}", json={"name": f"{business_id} LLC", "country": country}, headers=headers)
    assert response.status_code in (200, 201), response.text
    for account_id, body in accounts.items():
        response = await client.put(f"/internal/v1/businesses/{business_id}/accounts/{account_id}", json=body, headers=headers)
        assert response.status_code in (200, 201), response.text


@pytest.fixture
async def business(client: httpx.AsyncClient, service_headers) -> str:  # type: ignore[no-untyped-def]
    await register(client, service_headers(), "biz-1")
    return "biz-1"
