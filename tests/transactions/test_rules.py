"""Each QuickBooks rule refuses the whole request, names the transaction and the rule, and queues nothing."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.transactions.conftest import NEW_YORK, days, listing, local_today, post, transaction

NOTHING = {"queued": 0, "held": 0, "sending": 0, "delivered": 0, "failed": 0, "refused_by_codat": 0}


async def refused(client, headers, transactions, account="acc-1") -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(field, rule) of each refusal; asserts that nothing was queued."""
    before = (await listing(client, headers, account))["counts"]
    response = await post(client, headers, transactions, account)
    body = response.json()
    assert response.status_code == 422, body
    assert body["error"] == "transactions_refused"
    assert (await listing(client, headers, account))["counts"] == before
    return [(f["field"], f["reason"].split(":")[0]) for f in body["fields"]]


class TestDates:
    async def test_a_date_after_today_is_in_the_future(self, client, tx_headers, connected):
        tomorrow = connected["today"] + days(1)

        assert await refused(client, tx_headers, [transaction("t1", tomorrow)]) == [
            ("transactions.0.date", "future_date")
        ]

    async def test_a_time_later_today_is_in_the_future_too(self, client, tx_headers, connected, sandbox):
        later = sandbox.clock.now().astimezone(NEW_YORK).replace(tzinfo=None) + timedelta(minutes=5)

        assert await refused(
            client, tx_headers, [transaction("t1", later.isoformat(timespec="seconds"))]
        ) == [("transactions.0.date", "future_date")]

    async def test_the_first_write_goes_back_7_days_before_the_feed_start_and_no_further(
        self, client, tx_headers, connected
    ):
        start = connected["today"]  # the feed starts today
        assert (await listing(client, tx_headers))["acceptsFrom"] == str(start - days(7))
        assert await refused(client, tx_headers, [transaction("t0", start - days(8))]) == [
            ("transactions.0.date", "before_earliest_date")
        ]

        back_fill = [transaction(f"t{n}", start - days(7 - n)) for n in range(8)]
        assert (await post(client, tx_headers, back_fill)).status_code == 202

    async def test_after_the_first_write_before_yesterday_is_too_old(self, client, tx_headers, connected):
        today = connected["today"]
        assert (await post(client, tx_headers, [transaction("t1", today - days(5))])).status_code == 202
        assert (await listing(client, tx_headers))["acceptsFrom"] == str(today - days(1))

        assert await refused(client, tx_headers, [transaction("t2", today - days(2))]) == [
            ("transactions.0.date", "before_earliest_date")
        ]

    async def test_older_than_the_newest_already_accepted_for_the_account(
        self, client, tx_headers, connected
    ):
        today = connected["today"]
        assert (await post(client, tx_headers, [transaction("t1", today)])).status_code == 202

        assert await refused(client, tx_headers, [transaction("t2", today - days(1))]) == [
            ("transactions.0.date", "older_than_newest")
        ]
        assert (
            await post(client, tx_headers, [transaction("t2", today - days(1))], account="acc-2")
        ).status_code == 202

    async def test_a_request_not_in_chronological_order(self, client, tx_headers, connected):
        today = connected["today"]
        transactions = [
            transaction("t1", today - days(1)),
            transaction("t2", today),
            transaction("t3", today - days(1)),
        ]

        assert await refused(client, tx_headers, transactions) == [
            ("transactions.2.date", "not_chronological")
        ]

    async def test_the_businesss_time_zone_decides_what_today_is(
        self, client, tx_headers, service_headers, connected, sandbox
    ):
        kiritimati = ZoneInfo("Pacific/Kiritimati")  # UTC+14: at 17:00 UTC it is already tomorrow there
        its_today = local_today(sandbox, kiritimati)
        assert its_today == connected["today"] + days(1)

        assert await refused(client, tx_headers, [transaction("t1", its_today)]) == [
            ("transactions.0.date", "future_date")
        ]
        body = {"name": "biz-1 LLC", "country": "US", "timeZone": "Pacific/Kiritimati"}
        assert (
            await client.put("/internal/v1/businesses/biz-1", json=body, headers=service_headers())
        ).status_code == 200
        assert (await post(client, tx_headers, [transaction("t1", its_today)])).status_code == 202


class TestAmounts:
    @pytest.mark.parametrize(
        ("kind", "amount"), [("Credit", "-10.00"), ("Debit", "10.00"), ("Credit", "0"), ("Debit", "0")]
    )
    async def test_the_sign_must_match_the_type(self, client, tx_headers, connected, kind, amount):
        assert await refused(client, tx_headers, [transaction("t1", connected["today"], amount, kind)]) == [
            ("transactions.0.amount", "sign_mismatch")
        ]

    async def test_an_unknown_type_takes_either_sign(self, client, tx_headers, connected):
        today = connected["today"]
        response = await post(
            client,
            tx_headers,
            [transaction("t1", today, "-1.00", "Unknown"), transaction("t2", today, "1.00", "Unknown")],
        )

        assert response.status_code == 202


class TestWholeRequest:
    async def test_one_bad_transaction_refuses_the_others_and_each_is_named(
        self, client, tx_headers, connected
    ):
        today = connected["today"]
        transactions = [
            transaction("t1", today - days(1)),
            transaction("t2", today + days(1)),
            transaction("t3", today, "5.00", "Debit"),
            transaction("t4", today),
        ]

        assert await refused(client, tx_headers, transactions) == [
            ("transactions.1.date", "future_date"),
            ("transactions.2.amount", "sign_mismatch"),
        ]

    async def test_an_id_another_account_has_is_refused(self, client, tx_headers, connected):
        assert (
            await post(client, tx_headers, [transaction("t1", connected["today"])], account="acc-2")
        ).status_code == 202

        assert await refused(client, tx_headers, [transaction("t1", connected["today"])]) == [
            ("transactions.0.id", "id_in_use")
        ]


class TestTheAccount:
    async def test_an_account_not_connected_in_quickbooks_is_refused(self, client, tx_headers, connected):
        response = await post(client, tx_headers, [transaction("t1", connected["today"])], account="acc-3")

        assert response.status_code == 409
        assert response.json()["error"] == "account_not_connected"
        assert (await listing(client, tx_headers, "acc-3"))["counts"] == NOTHING

    async def test_an_account_disconnected_since_takes_them_and_holds_them(
        self, client, tx_headers, user_headers, connected, sandbox
    ):
        done = await client.post(
            f"/sandbox/_sandbox/connections/{connected['connection_id']}/accounts/acc-1/disconnect"
        )
        assert done.status_code == 200
        await client.post("/v1/bank-feed/refresh", headers=user_headers("biz-1"))

        response = await post(client, tx_headers, [transaction("t1", connected["today"])])

        assert response.status_code == 202
        page = await listing(client, tx_headers)
        assert page["counts"] == {**NOTHING, "queued": 1, "held": 1}
        assert (page["held"]["reason"], page["transactions"][0]["status"]) == ("account_disconnected", "held")

    async def test_a_business_before_it_connects_is_refused(self, client, tx_headers, business):
        response = await client.post(
            "/internal/v1/businesses/biz-1/accounts/acc-1/transactions",
            json={"transactions": [transaction("t1", "2026-11-23")]},
            headers=tx_headers,
        )

        assert (response.status_code, response.json()["error"]) == (409, "account_not_connected")

    @pytest.mark.parametrize(
        ("business", "account", "error"),
        [("ghost", "acc-1", "business_not_found"), ("biz-1", "acc-9", "account_not_found")],
    )
    async def test_an_unknown_business_or_account_is_a_404(
        self, client, tx_headers, connected, business, account, error
    ):
        response = await client.post(
            f"/internal/v1/businesses/{business}/accounts/{account}/transactions",
            json={"transactions": [transaction("t1", connected["today"])]},
            headers=tx_headers,
        )

        assert (response.status_code, response.json()["error"]) == (404, error)


class TestShape:
    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"date": "2026-11-23T10:00:00Z"}, "body.transactions.0.date"),
            ({"date": "23/11/2026"}, "body.transactions.0.date"),
            ({"amount": "1.001"}, "body.transactions.0.amount"),
            ({"transactionType": "Fee"}, "body.transactions.0.transactionType"),
            ({"description": ""}, "body.transactions.0.description"),
            ({"balance": None}, "body.transactions.0.balance"),
            ({"counterparty": "ACME"}, "body.transactions.0.counterparty"),
        ],
    )
    async def test_a_malformed_transaction_is_a_422_naming_the_field(
        self, client, tx_headers, connected, change, field
    ):
        response = await post(client, tx_headers, [{**transaction("t1", connected["today"]), **change}])

        assert response.status_code == 422
        assert [f["field"] for f in response.json()["fields"]] == [field]
        assert (await listing(client, tx_headers))["counts"] == NOTHING

    async def test_more_than_1000_in_a_request_is_refused(self, client, tx_headers, connected):
        transactions = [transaction(f"t{n}", connected["today"]) for n in range(1001)]

        response = await post(client, tx_headers, transactions)

        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == "body.transactions"
        assert (await listing(client, tx_headers))["counts"] == NOTHING

    async def test_a_local_date_time_is_taken_as_given(self, client, tx_headers, connected, sandbox):
        earlier = sandbox.clock.now().astimezone(NEW_YORK).replace(tzinfo=None, microsecond=0) - timedelta(
            hours=1
        )

        assert (await post(client, tx_headers, [transaction("t1", earlier.isoformat())])).status_code == 202
        assert (await listing(client, tx_headers))["transactions"][0]["date"] == earlier.isoformat()
