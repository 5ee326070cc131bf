"""The contract checker itself: it refuses what breaks Codat's OpenAPI files and accepts what Codat allows."""

import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.contract import ContractViolation, contract_checked, validate_response, validate_webhook

COMPANY = {
    "id": "8a210b68-6988-11ed-a1eb-0242ac120002",
    "name": "Dave",
    "redirect": "https://link.codat.io/c",
}
CONNECTION = {
    "id": "2e9d2c44-f675-40ba-8049-353bfcb5e171",
    "integrationId": "6b113e06-e818-45d7-977b-8e6bb3d01269",
    "sourceId": "56e6575a-3f1f-4918-b009-f7535555f0d6",
    "sourceType": "BankFeed",
    "platformName": "QuickBooks Online Bank Feeds",
    "linkUrl": "https://link-api.codat.io/companies/x/connections/y/start?otp=123456",
    "status": "PendingAuth",
    "created": "2022-09-01T10:21:57Z",
}
ACCOUNT = {"id": "ac-1", "accountName": "A", "accountType": "checking", "accountNumber": "1",
           "currency": "USD", "balance": 1, "status": "pending", "feedStartDate": None}  # fmt: skip
ERROR = {"statusCode": 404, "service": "PublicApi", "error": "Not found", "correlationId": "abc",
         "canBeRetried": "Unknown", "detailedErrorCode": 0, "validation": None}  # fmt: skip
CONNECTION_PATH = "/companies/c/connections/k"
ACCOUNTS_PATH = CONNECTION_PATH + "/connectionInfo/bankFeedAccounts"


def check(method: str, path: str, status: int, body: object) -> None:
    validate_response(method, path, status, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("POST", "/companies", 200, COMPANY),
        ("GET", CONNECTION_PATH, 200, CONNECTION),
        ("GET", ACCOUNTS_PATH, 200, [ACCOUNT]),
        ("PATCH", ACCOUNTS_PATH + "/ac-1", 200, {**ACCOUNT, "accountName": None}),
        ("GET", "/companies/c", 404, ERROR),
        ("POST", CONNECTION_PATH.rsplit("/", 1)[0], 400, {**ERROR, "statusCode": 400}),
        ("GET", "/integrations/hcws", 200, {"key": "hcws", "logoUrl": "x", "name": "QBO", "enabled": True}),
        ("GET", "/not/a/codat/path", 200, {"anything": True}),
    ],
)
def test_what_codat_allows_passes(method, path, status, body) -> None:
    check(method, path, status, body)


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "reason"),
    [
        (
            "POST",
            "/companies",
            200,
            {"id": COMPANY["id"], "name": "Dave"},
            "'redirect' is a required property",
        ),
        ("GET", CONNECTION_PATH, 200, {**CONNECTION, "otp": "1"}, "Additional properties"),
        ("GET", CONNECTION_PATH, 200, {**CONNECTION, "status": "Connected"}, "is not one of"),
        (
            "GET",
            ACCOUNTS_PATH,
            200,
            [{**ACCOUNT, "accountInfo": None, "accountType": "Debit"}],
            "is not one of",
        ),
        ("GET", ACCOUNTS_PATH, 200, {"results": []}, "is not valid"),
        ("GET", "/companies/c", 404, {**ERROR, "canBeRetried": False}, "is not of type 'string'"),
        ("GET", "/companies/c", 404, {**ERROR, "correlationId": ""}, "correlationId"),
        ("GET", "/companies/c", 404, {**ERROR, "statusCode": 400}, "statusCode 404"),
        ("POST", "/companies", 201, COMPANY, "does not declare 201"),
        ("DELETE", CONNECTION_PATH, 200, {"deleted": True}, "declares no body"),
    ],
)
def test_what_codat_does_not_allow_fails(method, path, status, body, reason) -> None:
    with pytest.raises(ContractViolation, match=reason):
        check(method, path, status, body)


def test_a_body_that_is_not_json_fails() -> None:
    with pytest.raises(ContractViolation, match="not JSON"):
        validate_response("GET", "/companies/c", 200, b"<html>")


async def test_the_asgi_wrapper_records_violations_under_a_prefix() -> None:
    async def broken_company(_):
        return JSONResponse({"id": "x"})

    app = contract_checked(
        Starlette(routes=[Route("/sandbox/companies/{id}", broken_company)]), prefix="/sandbox"
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/sandbox/companies/x")).status_code == 200
    assert len(app.violations) == 1
    assert "'name' is a required property" in app.violations[0]


def test_webhooks_are_checked_against_their_event_schema() -> None:
    event = {"id": "ba29118f-5406-4e59-b05c-ba307ca38d01", "eventType": "connection.connected",
             "generatedDate": "2024-01-01T00:00:00Z", "payload": {"connection": CONNECTION}}  # fmt: skip
    validate_webhook(event)
    with pytest.raises(ContractViolation):
        validate_webhook({**event, "payload": {"connection": {**CONNECTION, "status": "Connected"}}})
    with pytest.raises(ContractViolation, match="no spec declares"):
        validate_webhook({**event, "eventType": "connection.teleported"})
