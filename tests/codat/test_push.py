"""Create bank transactions and read push operations, against respx with bodies from Codat's spec."""

import json
from datetime import datetime
from decimal import Decimal

import httpx
import pytest
import respx

from app.codat.client import CodatClient
from app.codat.exceptions import CodatRejected
from app.codat.schemas import BankTransaction, BankTransactionType, PushOperationStatus
from tests.codat.conftest import FakeClock
from tests.codat.payloads import COMPANY_ID, CONNECTION_ID, error

PUSH_KEY = "a9367074-b5c3-42c4-9be4-be129f43577e"
PUSH_PATH = f"/companies/{COMPANY_ID}/connections/{CONNECTION_ID}/push/bankAccounts/acc-001/bankTransactions"
OPERATION_PATH = f"/companies/{COMPANY_ID}/push/{PUSH_KEY}"


def operation(status: str = "Pending", **fields: object) -> dict[str, object]:
    return {
        "dataType": "bankTransactions",
        "companyId": COMPANY_ID,
        "pushOperationKey": PUSH_KEY,
        "dataConnectionKey": CONNECTION_ID,
        "requestedOnUtc": "2026-11-23T10:00:00Z",
        "status": status,
        "statusCode": 202 if status == "Pending" else 200,
        "timeoutInMinutes": None,
        "validation": {"errors": [], "warnings": []},
        **fields,
    }


def transactions() -> list[BankTransaction]:
    return [
        BankTransaction(
            id="716422529",
            date=datetime(2023, 8, 22, 10, 21),
            description="Repayment of Credit Card",
            amount=Decimal("100.00"),
            balance=Decimal("100.00"),
            transaction_type=BankTransactionType.CREDIT,
        ),
        BankTransaction(
            id="716422530",
            date=datetime(2023, 8, 22),
            description="Amazon Purchase",
            amount=Decimal("-100.10"),
            balance=Decimal("-0.10"),
            transaction_type=BankTransactionType.DEBIT,
        ),
    ]


class TestCreateBankTransactions:
    async def test_posts_local_dates_numbers_and_the_account_with_the_idempotency_key(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.post(PUSH_PATH).respond(200, json=operation())

        pushed = await client.create_bank_transactions(
            COMPANY_ID, CONNECTION_ID, "acc-001", transactions(), idempotency_key="key-1"
        )

        assert route.calls.last.request.headers["Idempotency-Key"] == "key-1"
        assert json.loads(route.calls.last.request.content) == {
            "accountId": "acc-001",
            "transactions": [
                {
                    "id": "716422529",
                    "date": "2023-08-22T10:21:00",
                    "description": "Repayment of Credit Card",
                    "amount": 100.0,
                    "balance": 100.0,
                    "transactionType": "Credit",
                },
                {
                    "id": "716422530",
                    "date": "2023-08-22T00:00:00",
                    "description": "Amazon Purchase",
                    "amount": -100.1,
                    "balance": -0.1,
                    "transactionType": "Debit",
                },
            ],
        }
        assert (pushed.push_operation_key, pushed.status) == (PUSH_KEY, PushOperationStatus.PENDING)
        assert pushed.completed_on_utc is None

    async def test_a_lost_answer_is_asked_again_with_the_same_key_and_the_same_body(
        self, client: CodatClient, router: respx.MockRouter, clock: FakeClock
    ) -> None:
        route = router.post(PUSH_PATH).mock(
            side_effect=[httpx.Response(504, json=error(504)), httpx.Response(200, json=operation())]
        )

        await client.create_bank_transactions(
            COMPANY_ID, CONNECTION_ID, "acc-001", transactions(), idempotency_key="key-2"
        )

        first, second = route.calls
        assert [c.request.headers["Idempotency-Key"] for c in route.calls] == ["key-2", "key-2"]
        assert first.request.content == second.request.content

    async def test_a_refusal_keeps_the_ids_codat_names(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        body = error(400)
        body["validation"] = {
            "errors": [{"itemId": "716422530", "message": "Date is in the future", "validatorName": "v"}]
        }
        router.post(PUSH_PATH).respond(400, json=body)

        with pytest.raises(CodatRejected) as refused:
            await client.create_bank_transactions(
                COMPANY_ID, CONNECTION_ID, "acc-001", transactions(), idempotency_key="key-3"
            )

        assert (refused.value.item_ids, refused.value.validation_errors) == (
            ["716422530"],
            ["Date is in the future"],
        )


class TestGetPushOperation:
    async def test_reads_a_failed_operation_and_its_validation(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        failed = operation(
            "Failed",
            completedOnUtc="2026-11-23T10:00:05Z",
            errorMessage="1 refused",
            validation={
                "errors": [{"itemId": "716422530", "message": "Older than the newest", "validatorName": "v"}],
                "warnings": None,
            },
        )
        router.get(OPERATION_PATH).respond(200, json=failed)

        read = await client.get_push_operation(COMPANY_ID, PUSH_KEY)

        assert read.status is PushOperationStatus.FAILED
        assert [(e.item_id, e.message) for e in read.validation_errors] == [
            ("716422530", "Older than the newest")
        ]
        assert read.completed_on_utc is not None
