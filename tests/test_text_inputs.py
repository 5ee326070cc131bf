"""Text in: NUL, control characters, reserved ids and loose types are refused at the door, naming the field;
nothing is sent to Codat and nothing is stored."""

from datetime import date
from urllib.parse import quote

import pytest

from app.models import Base

BAD_TEXT = {
    "NUL": "Main\x00checking",
    "bell": "Main\x07checking",
    "newline": "Main\nchecking",
    "C1 control": "Main\x85checking",
    "bidi override": "Main\u202echecking",
}
BAD_IDS = {**BAD_TEXT, "reserved credentials": "credentials", "reserved batch": "batch", "space": "a b"}
ACCOUNT = {
    "name": "Checking",
    "accountType": "checking",
    "accountNumber": "000123456789",
    "currency": "USD",
    "balance": "10.00",
}


def transaction(**overrides: object) -> dict[str, object]:
    return {
        "id": "t-1",
        "date": date.today().isoformat(),
        "description": "Coffee",
        "amount": "-3.50",
        "balance": "100.00",
        **overrides,
    }


def cases(business: str) -> list[tuple[str, str, str, object, str]]:
    """(case, method, path, body, field the 422 must name) for every text field and id, each bad value."""
    internal = f"/internal/v1/businesses/{business}"
    out: list[tuple[str, str, str, object, str]] = []
    for name, bad in BAD_TEXT.items():
        out += [
            (f"business name {name}", "PUT", internal, {"name": bad, "country": "US"}, "body.name"),
            (
                f"time zone {name}",
                "PUT",
                internal,
                {"name": "A", "country": "US", "timeZone": bad},
                "body.timeZone",
            ),
            (
                f"account name {name}",
                "PUT",
                f"{internal}/accounts/acc-9",
                {**ACCOUNT, "name": bad},
                "body.name",
            ),
            (
                f"rename {name}",
                "PATCH",
                "/v1/bank-feed/accounts/acc-1",
                {"accountName": bad},
                "body.accountName",
            ),
            (
                f"description {name}",
                "POST",
                f"{internal}/accounts/acc-1/transactions",
                {"transactions": [transaction(description=bad)]},
                "body.transactions.0.description",
            ),
        ]
    for name, bad in BAD_IDS.items():
        segment = quote(bad, safe="")
        out += [
            (
                f"business id {name}",
                "PUT",
                f"/internal/v1/businesses/{segment}",
                {"name": "A", "country": "US"},
                "path.business_id",
            ),
            (f"account id {name}", "PUT", f"{internal}/accounts/{segment}", ACCOUNT, "path.account_id"),
            (
                f"renamed account id {name}",
                "PATCH",
                f"/v1/bank-feed/accounts/{segment}",
                {"accountName": "A"},
                "path.account_id",
            ),
            (
                f"transactions account id {name}",
                "POST",
                f"{internal}/accounts/{segment}/transactions",
                {"transactions": [transaction()]},
                "path.account_id",
            ),
            (
                f"connect account id {name}",
                "POST",
                "/v1/bank-feed/connect",
                {"accountIds": [bad]},
                "body.accountIds.0",
            ),
            (
                f"add account id {name}",
                "POST",
                "/v1/bank-feed/accounts",
                {"accountIds": [bad]},
                "body.accountIds.0",
            ),
            (
                f"transaction id {name}",
                "POST",
                f"{internal}/accounts/acc-1/transactions",
                {"transactions": [transaction(id=bad)]},
                "body.transactions.0.id",
            ),
        ]
    out += [
        (
            "amount 1_000",
            "POST",
            f"{internal}/accounts/acc-1/transactions",
            {"transactions": [transaction(amount="1_000")]},
            "body.transactions.0.amount",
        ),
        ("balance 1e3", "PUT", f"{internal}/accounts/acc-9", {**ACCOUNT, "balance": "1e3"}, "body.balance"),
        (
            "withCredentials yes",
            "POST",
            "/v1/bank-feed/reconnect",
            {"withCredentials": "yes"},
            "body.withCredentials",
        ),
    ]
    return out


async def every_table(app) -> str:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        connection = await session.connection()
        dumps = [
            repr((await connection.exec_driver_sql(f'SELECT * FROM "{table.name}"')).all())
            for table in Base.metadata.sorted_tables
            # The audit trail's writer records earlier Codat calls in the background, whenever it runs.
            if table.name != "audit_entry"
        ]
        return "\n".join(dumps)


@pytest.fixture
async def connected(client, user_headers, business) -> dict:  # type: ignore[no-untyped-def]
    response = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
    assert response.status_code == 200
    return response.json()


async def test_every_bad_value_is_a_422_naming_the_field_and_changes_nothing_here_or_at_codat(
    app, client, sandbox, user_headers, service_headers, business, connected
):
    headers = {
        "user": user_headers(business),
        "service": service_headers("businesses:write", "bank-feed:read", "transactions:write"),
    }
    calls_before, stored_before = sum(sandbox.counters.values()), await every_table(app)

    wrong = {}
    for case, method, path, body, field in cases(business):
        who = "service" if path.startswith("/internal") else "user"
        response = await client.request(method, path, json=body, headers=headers[who])
        named = [f["field"] for f in response.json().get("fields", [])] if response.status_code == 422 else []
        if response.status_code != 422 or field not in named:
            wrong[case] = (response.status_code, named or response.text[:200])

    assert wrong == {}
    assert sum(sandbox.counters.values()) == calls_before  # nothing sent to Codat
    assert await every_table(app) == stored_before  # nothing stored


async def test_text_is_normalised_before_it_is_stored_or_sent(
    client, user_headers, business, connected, sandbox
):
    decomposed = "Cafe\u0301 account"  # e + combining acute accent

    response = await client.patch(
        "/v1/bank-feed/accounts/acc-1", json={"accountName": decomposed}, headers=user_headers(business)
    )

    assert response.status_code == 200
    view = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()
    [account] = [a for a in view["accounts"] if a["accountId"] == "acc-1"]
    assert account["accountName"] == "Caf\u00e9 account"
