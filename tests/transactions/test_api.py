"""Sending transactions and reading them back: duplicates, statuses, paging, scopes."""

import pytest

from tests.transactions.conftest import days, listing, path, post, transaction


class TestDuplicates:
    async def test_an_id_sent_again_is_acknowledged_and_not_queued_twice(self, client, tx_headers, connected):
        today = connected["today"]
        first = await post(client, tx_headers, [transaction("t1", today - days(1)), transaction("t2", today)])
        again = await post(
            client,
            tx_headers,
            [transaction("t1", today - days(1)), transaction("t2", today), transaction("t3", today)],
        )

        assert (first.status_code, first.json()) == (
            202,
            {"accountId": "acc-1", "accepted": ["t1", "t2"], "duplicates": []},
        )
        assert again.json() == {"accountId": "acc-1", "accepted": ["t3"], "duplicates": ["t1", "t2"]}
        assert [t["id"] for t in (await listing(client, tx_headers))["transactions"]] == ["t1", "t2", "t3"]

    async def test_a_duplicate_is_not_held_to_the_date_rules_again(self, client, tx_headers, connected):
        """Yesterday's transactions sent again after today's went: still a plain acknowledgement."""
        today = connected["today"]
        await post(client, tx_headers, [transaction("t1", today - days(1))])
        await post(client, tx_headers, [transaction("t2", today)])

        response = await post(client, tx_headers, [transaction("t1", today - days(1))])

        assert (response.status_code, response.json()["duplicates"]) == (202, ["t1"])

    async def test_an_id_twice_in_one_request_is_queued_once(self, client, tx_headers, connected):
        today = connected["today"]

        response = await post(client, tx_headers, [transaction("t1", today), transaction("t1", today)])

        assert (response.json()["accepted"], response.json()["duplicates"]) == (["t1"], ["t1"])
        assert (await listing(client, tx_headers))["counts"]["queued"] == 1


class TestListing:
    async def test_shows_each_transaction_as_accepted_with_counts(self, client, tx_headers, connected):
        today = connected["today"]
        await post(client, tx_headers, [transaction("t1", today, "-4.20", "Debit", description="Coffee")])

        page = await listing(client, tx_headers)

        assert page["counts"] == {
            "queued": 1,
            "held": 0,
            "sending": 0,
            "delivered": 0,
            "failed": 0,
            "refused_by_codat": 0,
        }
        [only] = page["transactions"]
        assert {
            k: only[k]
            for k in ("id", "date", "description", "amount", "transactionType", "status", "pushOperationKey")
        } == {
            "id": "t1",
            "date": f"{today}T00:00:00",
            "description": "Coffee",
            "amount": "-4.20",
            "transactionType": "Debit",
            "status": "queued",
            "pushOperationKey": None,
        }
        assert page["nextCursor"] is None

    async def test_pages_in_accepted_order_with_a_cursor(self, client, tx_headers, connected):
        await post(client, tx_headers, [transaction(f"t{n}", connected["today"]) for n in range(5)])

        first = await listing(client, tx_headers, limit=2)
        second = await listing(client, tx_headers, limit=2, after=first["nextCursor"])
        last = await listing(client, tx_headers, limit=2, after=second["nextCursor"])

        assert [[t["id"] for t in p["transactions"]] for p in (first, second, last)] == [
            ["t0", "t1"],
            ["t2", "t3"],
            ["t4"],
        ]
        assert last["nextCursor"] is None

    @pytest.mark.parametrize(
        ("status", "expected"), [("pending", ["t1"]), ("queued", ["t1"]), ("delivered", []), (None, ["t1"])]
    )
    async def test_filters_by_status(self, client, tx_headers, connected, status, expected):
        await post(client, tx_headers, [transaction("t1", connected["today"])])

        params = {"status": status} if status else {}
        assert [t["id"] for t in (await listing(client, tx_headers, **params))["transactions"]] == expected

    @pytest.mark.parametrize("params", [{"status": "lost"}, {"after": "-1"}, {"limit": 0}, {"limit": 1001}])
    async def test_bad_parameters_are_a_422(self, client, tx_headers, connected, params):
        response = await client.get(path(), params=params, headers=tx_headers)

        assert response.status_code == 422

    async def test_only_the_accounts_own_transactions(self, client, tx_headers, connected):
        await post(client, tx_headers, [transaction("t1", connected["today"])], account="acc-2")

        assert (await listing(client, tx_headers))["transactions"] == []


class TestScopes:
    async def test_sending_needs_transactions_write(self, client, service_headers, connected):
        response = await post(
            client, service_headers("transactions:read"), [transaction("t1", connected["today"])]
        )

        assert response.status_code == 403

    async def test_reading_needs_transactions_read(self, client, service_headers, connected):
        response = await client.get(path(), headers=service_headers("transactions:write"))

        assert response.status_code == 403

    async def test_an_end_user_token_is_not_a_service(self, client, user_headers, connected):
        response = await post(client, user_headers("biz-1"), [transaction("t1", connected["today"])])

        assert response.status_code == 401
