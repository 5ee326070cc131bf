"""Bank transactions at the sandbox: pushed to a connected source account, answered Pending, then Success
(recorded in the account's ledger) or Failed by QBO's rules, with the `bankTransactions.write.*` webhooks."""

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from codat_bankfeeds import CodatBankFeeds
from codat_bankfeeds.models import shared
from codat_bankfeeds.utils import RetryConfig

from app.config import DEV_WEBHOOK_SECRET
from app.sandbox import SandboxConfig
from app.sandbox.models import AccountStatus, ConnectionStatus
from tests.contract import validate_webhook
from tests.sandbox.support import Sandbox, assert_codat_error, basic_auth, serve_in_thread

TODAY = datetime.now(UTC).date()


def transaction(tid: str, when: object = TODAY, amount: float = -12.5, kind: str = "Debit") -> dict[str, Any]:
    return {
        "id": tid,
        "date": str(when),
        "description": f"card {tid}",
        "amount": amount,
        "balance": 100,
        "transactionType": kind,
    }


class Account:
    """A connected source account at the sandbox, and its push path."""

    def __init__(self, sandbox: Sandbox, connection: dict[str, Any], account_id: str) -> None:
        self.sandbox, self.connection, self.id = sandbox, connection, account_id
        self.company_id = connection["companyId"]
        connection_path = f"/companies/{self.company_id}/connections/{connection['id']}"
        self.path = f"{connection_path}/push/bankAccounts/{account_id}/bankTransactions"

    async def push(self, transactions: list[dict[str, Any]], **headers: str) -> Any:
        return await self.sandbox.client.post(
            self.path, json={"accountId": self.id, "transactions": transactions}, headers=headers
        )

    async def operation(self, key: str) -> dict[str, Any]:
        response = await self.sandbox.client.get(f"/companies/{self.company_id}/push/{key}")
        assert response.status_code == 200, response.text
        return response.json()

    async def settled(self, key: str) -> dict[str, Any]:
        await asyncio.sleep(0.01)  # with pushCompletionSeconds 0, the push completes on its timer at once
        return await self.operation(key)

    def ledger(self) -> list[str]:
        return [
            t["id"] for t in self.sandbox.state.bank_transactions.get((self.connection["id"], self.id), [])
        ]


@pytest.fixture
async def account(sandbox: Sandbox) -> Account:
    connection = await sandbox.connection()
    await sandbox.account(connection, "ac-001")
    # Linked, as QBO leaves it: Codat takes no write on a connection that is not.
    sandbox.state.connections[connection["id"]].status = ConnectionStatus.linked
    sandbox.state.connections[connection["id"]].accounts["ac-001"].status = AccountStatus.connected
    return Account(sandbox, connection, "ac-001")


class TestPush:
    async def test_is_answered_pending_with_the_data_then_succeeds_into_the_ledger(
        self, account: Account
    ) -> None:
        response = await account.push([transaction("t1"), transaction("t2", amount=30, kind="Credit")])

        pushed = response.json()
        assert response.status_code == 200
        assert (pushed["status"], pushed["statusCode"], pushed["dataType"]) == (
            "Pending",
            202,
            "bankTransactions",
        )
        assert "completedOnUtc" not in pushed
        assert [t["id"] for t in pushed["data"]["transactions"]] == ["t1", "t2"]
        done = await account.settled(pushed["pushOperationKey"])
        assert (done["status"], done["statusCode"], done["errorMessage"]) == ("Success", 200, None)
        assert [c["recordRef"]["id"] for c in done["changes"]] == ["t1", "t2"]
        assert account.ledger() == ["t1", "t2"]

    async def test_the_last_balance_becomes_the_account_balance(self, account: Account) -> None:
        pushed = (await account.push([transaction("t1"), {**transaction("t2"), "balance": 87.5}])).json()

        await account.settled(pushed["pushOperationKey"])

        [listed] = await account.sandbox.accounts(account.connection)
        assert listed["balance"] == 87.5

    async def test_stays_pending_for_push_completion_seconds(self, account: Account) -> None:
        account.sandbox.state.set_knobs(pushCompletionSeconds=0.2)
        key = (await account.push([transaction("t1")])).json()["pushOperationKey"]

        assert (await account.settled(key))["status"] == "Pending"
        await asyncio.sleep(0.3)
        assert (await account.operation(key))["status"] == "Success"

    async def test_the_same_idempotency_key_replays_the_push_instead_of_writing_twice(
        self, account: Account
    ) -> None:
        first = await account.push([transaction("t1")], **{"Idempotency-Key": "k-1"})
        again = await account.push([transaction("t1")], **{"Idempotency-Key": "k-1"})

        assert again.json()["pushOperationKey"] == first.json()["pushOperationKey"]
        await account.settled(first.json()["pushOperationKey"])
        assert account.ledger() == ["t1"]
        assert len(account.sandbox.state.push_operations) == 1

    async def test_a_sign_at_odds_with_the_type_is_a_warning_not_a_failure(self, account: Account) -> None:
        key = (await account.push([transaction("t1", amount=5, kind="Debit")])).json()["pushOperationKey"]

        done = await account.settled(key)

        assert done["status"] == "Success"
        assert [w["itemId"] for w in done["validation"]["warnings"]] == ["t1"]


class TestQboRules:
    @pytest.mark.parametrize(
        ("transactions", "refused", "words"),
        [
            ([transaction("t1"), transaction("t2", TODAY - timedelta(days=1))], ["t2"], "chronological"),
            ([transaction("t1", TODAY + timedelta(days=2))], ["t1"], "in the future"),
            (
                [transaction("t1", f"{TODAY}T10:00:00"), transaction("t2", f"{TODAY}T09:59:59")],
                ["t2"],
                "chronological",
            ),
        ],
    )
    async def test_a_push_breaking_a_rule_fails_whole_naming_each_transaction(
        self, account: Account, transactions: list[dict[str, Any]], refused: list[str], words: str
    ) -> None:
        key = (await account.push(transactions)).json()["pushOperationKey"]

        done = await account.settled(key)

        assert (done["status"], done["statusCode"]) == ("Failed", 400)
        assert [e["itemId"] for e in done["validation"]["errors"]] == refused
        assert words in done["validation"]["errors"][0]["message"]
        assert account.ledger() == []

    async def test_nothing_older_than_the_newest_transaction_in_the_account(self, account: Account) -> None:
        await account.settled(
            (await account.push([transaction("t1", f"{TODAY}T12:00:00")])).json()["pushOperationKey"]
        )

        key = (
            await account.push(
                [transaction("t2", f"{TODAY}T11:00:00"), transaction("t3", f"{TODAY}T13:00:00")]
            )
        ).json()["pushOperationKey"]
        done = await account.settled(key)

        assert [e["itemId"] for e in done["validation"]["errors"]] == ["t2"]
        assert account.ledger() == ["t1"]

    async def test_an_offset_is_ignored_as_codat_does(self, account: Account) -> None:
        key = (
            await account.push(
                [transaction("t1", f"{TODAY}T10:00:00+09:00"), transaction("t2", f"{TODAY}T10:00:00-05:00")]
            )
        ).json()

        assert (await account.settled(key["pushOperationKey"]))["status"] == "Success"

    async def test_an_account_disconnected_before_completion_fails_the_push(self, account: Account) -> None:
        account.sandbox.state.set_knobs(pushCompletionSeconds=0.05)
        key = (await account.push([transaction("t1")])).json()["pushOperationKey"]
        account.sandbox.state.connections[account.connection["id"]].accounts[
            "ac-001"
        ].status = AccountStatus.disconnected

        await asyncio.sleep(0.1)

        done = await account.operation(key)
        assert (done["status"], done["validation"]["errors"][0]["itemId"]) == ("Failed", "accountId")


class TestRefusedAtOnce:
    async def test_an_account_not_connected_is_a_400(self, account: Account) -> None:
        account.sandbox.state.connections[account.connection["id"]].accounts[
            "ac-001"
        ].status = AccountStatus.pending

        assert_codat_error(await account.push([transaction("t1")]), 400, "accountId")

    async def test_an_unknown_account_is_a_404(self, account: Account) -> None:
        response = await account.sandbox.client.post(
            account.path.replace("ac-001", "ac-404"),
            json={"accountId": "ac-404", "transactions": [transaction("t1")]},
        )

        assert_codat_error(response, 404)

    @pytest.mark.parametrize(
        ("body", "item_id"),
        [
            ({"accountId": "ac-002", "transactions": [transaction("t1")]}, "accountId"),
            ({"accountId": "ac-001", "transactions": []}, "transactions"),
            (
                {"accountId": "ac-001", "transactions": [transaction(f"t{n}") for n in range(1001)]},
                "transactions",
            ),
            (
                {"accountId": "ac-001", "transactions": [transaction("t1", "23/11/2026")]},
                "transactions.0.date",
            ),
            (
                {"accountId": "ac-001", "transactions": [{**transaction("t1"), "amount": "12.50"}]},
                "transactions.0.amount",
            ),
            (
                {"accountId": "ac-001", "transactions": [{**transaction("t1"), "transactionType": "Fee"}]},
                "transactions.0.transactionType",
            ),
        ],
    )
    async def test_a_malformed_request_is_a_400_naming_the_item(
        self, account: Account, body: dict[str, Any], item_id: str
    ) -> None:
        response = await account.sandbox.client.post(account.path, json=body)

        assert_codat_error(response, 400, item_id)
        assert account.sandbox.state.push_operations == {}

    async def test_faults_apply_to_the_push_operation_ids(self, account: Account) -> None:
        account.sandbox.state.set_knobs(errorRate=1.0, operations=["create-bank-transactions"])

        assert_codat_error(await account.push([transaction("t1")]), 500)


class TestOperations:
    async def test_are_listed_per_company_and_paged(self, account: Account) -> None:
        for n in range(3):
            await account.push([transaction(f"t{n}")])

        response = await account.sandbox.client.get(
            f"/companies/{account.company_id}/push", params={"pageSize": 2}
        )

        page = response.json()
        assert (page["totalResults"], len(page["results"]), "next" in page["_links"]) == (3, 2, True)

    async def test_an_unknown_key_or_another_companys_is_a_404(self, account: Account) -> None:
        key = (await account.push([transaction("t1")])).json()["pushOperationKey"]
        other = await account.sandbox.company("Other")

        assert_codat_error(
            await account.sandbox.client.get(
                f"/companies/{account.company_id}/push/00000000-0000-4000-8000-000000000000"
            ),
            404,
        )
        assert_codat_error(await account.sandbox.client.get(f"/companies/{other['id']}/push/{key}"), 404)

    async def test_the_ledger_is_readable_from_the_admin_api(self, account: Account) -> None:
        await account.settled((await account.push([transaction("t1")])).json()["pushOperationKey"])

        response = await account.sandbox.client.get(
            f"/_sandbox/connections/{account.connection['id']}/accounts/ac-001/bankTransactions"
        )

        assert [(t["id"], bool(t["pushOperationKey"])) for t in response.json()] == [("t1", True)]


class TestWebhooks:
    @pytest.fixture
    def events(self, sandbox: Sandbox) -> Iterator[list[dict[str, Any]]]:
        received: list[dict[str, Any]] = []

        async def consumer(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
            received.append(json.loads((await receive())["body"]))
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        with serve_in_thread(consumer) as url:
            sandbox.state.set_settings(webhook={"url": url + "/webhooks/codat", "secret": DEV_WEBHOOK_SECRET})
            yield received

    async def test_success_and_failure_are_announced_as_codat_does(
        self, account: Account, events: list[dict[str, Any]]
    ) -> None:
        ok = (await account.push([transaction("t1")])).json()["pushOperationKey"]
        await account.settled(ok)
        failed = (await account.push([transaction("t0", TODAY - timedelta(days=1))])).json()[
            "pushOperationKey"
        ]
        await account.settled(failed)
        await account.sandbox.state.webhooks.wait_idle()

        writes = {e["payload"]["id"]: e for e in events if e["eventType"].startswith("bankTransactions.")}
        assert (writes[ok]["eventType"], writes[ok]["payload"]["status"]) == (
            "bankTransactions.write.successful",
            "Success",
        )
        assert (writes[failed]["eventType"], writes[failed]["payload"]["status"]) == (
            "bankTransactions.write.unsuccessful",
            "Failed",
        )
        assert writes[ok]["payload"]["connectionId"] == account.connection["id"]
        for event in writes.values():
            validate_webhook(event)


def test_the_official_sdk_pushes_and_reads_the_operation(make_sandbox_app) -> None:  # type: ignore[no-untyped-def]
    app = make_sandbox_app(SandboxConfig(seed=5))
    with (
        serve_in_thread(app) as url,
        CodatBankFeeds(
            security=shared.Security(auth_header=basic_auth()),
            server_url=url,
            retry_config=RetryConfig("none", None, False),
        ) as codat,
    ):
        company = codat.companies.create(request={"name": "Bank of Dave"})
        connection = codat.connections.create(
            request={"company_id": company.id, "request_body": {"platform_key": "hcws"}}
        )
        ids = {"company_id": company.id, "connection_id": connection.id}
        codat.source_accounts.create(
            request={
                **ids,
                "request_body": {
                    "id": "ac-1",
                    "account_name": "Checking",
                    "account_type": "checking",
                    "account_number": "12345670",
                    "currency": "USD",
                    "balance": 10,
                },
            }
        )
        app.state.sandbox.connections[connection.id].status = ConnectionStatus.linked
        app.state.sandbox.connections[connection.id].accounts["ac-1"].status = AccountStatus.connected

        pushed = codat.transactions.create(
            request={
                **ids,
                "account_id": "ac-1",
                "create_bank_transactions": {
                    "account_id": "ac-1",
                    "transactions": [
                        {
                            "id": "t1",
                            "date": str(TODAY),
                            "description": "Coffee",
                            "amount": -3.5,
                            "balance": 6.5,
                            "transaction_type": "Debit",
                        }
                    ],
                },
            }
        )
        read = codat.transactions.get_create_operation(
            request={"company_id": company.id, "push_operation_key": pushed.push_operation_key}
        )
        listed = codat.transactions.list_create_operations(request={"company_id": company.id})

    assert pushed.status.value == "Pending"
    assert read.status.value == "Success"
    assert [o.push_operation_key for o in listed.results] == [pushed.push_operation_key]
