"""Internal services register businesses and bank accounts: the source of truth the SPA picks from."""

import pytest

from tests.factories import ACCOUNTS


class TestPutBusiness:
    async def test_registers_then_updates_a_business(self, client, service_headers):
        created = await client.put(
            "/internal/v1/businesses/biz-9", json={"name": "Acme", "country": "us"}, headers=service_headers()
        )
        updated = await client.put(
            "/internal/v1/businesses/biz-9",
            json={"name": "Acme Inc", "country": "CA"},
            headers=service_headers(),
        )

        assert created.status_code == 201
        assert created.json() == {
            "businessId": "biz-9",
            "name": "Acme",
            "country": "US",
            "timeZone": "America/New_York",
        }
        assert updated.status_code == 200
        assert (updated.json()["name"], updated.json()["timeZone"]) == ("Acme Inc", "America/Toronto")

    async def test_a_business_may_name_its_time_zone(self, client, service_headers):
        body = {"name": "Acme", "country": "US", "timeZone": "America/Los_Angeles"}
        created = await client.put("/internal/v1/businesses/biz-9", json=body, headers=service_headers())

        assert created.json()["timeZone"] == "America/Los_Angeles"

    @pytest.mark.parametrize(
        ("body", "field", "reason"),
        [
            ({"name": "Acme", "country": "GB"}, "body.country", "US and Canada only"),
            ({"name": "", "country": "US"}, "body.name", "at least 1 character"),
            ({"name": "x" * 101, "country": "US"}, "body.name", "at most 100 characters"),
            ({"country": "US"}, "body.name", "Field required"),
            ({"name": "Acme", "country": "US", "codatCompanyId": "x"}, "body.codatCompanyId", "Extra inputs"),
            (
                {"name": "Acme", "country": "US", "timeZone": "Mars/Olympus"},
                "body.timeZone",
                "not an IANA time zone",
            ),
        ],
    )
    async def test_bad_input_is_a_422_naming_the_field_and_changes_nothing(
        self, client, service_headers, body, field, reason
    ):
        response = await client.put("/internal/v1/businesses/biz-9", json=body, headers=service_headers())
        view = await client.get("/internal/v1/businesses/biz-9/bank-feed", headers=service_headers())

        assert response.status_code == 422
        error = response.json()
        assert error["error"] == "validation_error"
        assert [f["field"] for f in error["fields"]] == [field]
        assert reason in error["fields"][0]["reason"]
        assert view.status_code == 404


class TestPutBankAccount:
    async def test_registers_an_account_with_its_type_mapped_to_codats_enum(
        self, client, service_headers, business
    ):
        response = await client.put(
            f"/internal/v1/businesses/{business}/accounts/acc-3",
            json=ACCOUNTS["acc-3"],
            headers=service_headers(),
        )

        assert response.status_code == 200
        assert response.json()["accountType"] == "creditCard"
        assert response.json()["accountNumberLast4"] == "2222"
        assert "accountNumber" not in response.json()

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"accountType": "brokerage"}, "body.accountType"),
            ({"currency": "XYZ"}, "body.currency"),
            ({"currency": "US"}, "body.currency"),
            ({"balance": "12.345"}, "body.balance"),
            ({"accountNumber": "12"}, "body.accountNumber"),
            ({"routingNumber": "12ab"}, "body.routingNumber"),
            ({"name": ""}, "body.name"),
        ],
    )
    async def test_bad_account_details_are_a_422_and_keep_the_old_details(
        self, client, service_headers, business, change, field
    ):
        response = await client.put(
            f"/internal/v1/businesses/{business}/accounts/acc-1",
            json={**ACCOUNTS["acc-1"], **change},
            headers=service_headers(),
        )
        view = await client.get(f"/internal/v1/businesses/{business}/bank-feed", headers=service_headers())

        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == field
        account = next(a for a in view.json()["accounts"] if a["accountId"] == "acc-1")
        assert (account["accountName"], account["accountType"], account["currency"]) == (
            "Operating checking",
            "checking",
            "USD",
        )

    async def test_an_account_of_an_unknown_business_is_a_404(self, client, service_headers):
        response = await client.put(
            "/internal/v1/businesses/nobody/accounts/acc-1", json=ACCOUNTS["acc-1"], headers=service_headers()
        )

        assert response.status_code == 404
        assert response.json()["error"] == "business_not_found"


class TestInternalView:
    async def test_shows_registered_accounts_not_yet_offered(self, client, service_headers, business):
        response = await client.get(
            f"/internal/v1/businesses/{business}/bank-feed", headers=service_headers()
        )

        body = response.json()
        assert response.status_code == 200
        assert body["connection"] is None
        assert [a["status"] for a in body["accounts"]] == ["not_added"] * 3
        assert (body["connectedCount"], body["linkNeeded"], body["action"]) == (0, True, "connect")
