import asyncio
import base64
import json
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx
from prometheus_client import REGISTRY

from app.codat.client import CodatClient, build_http_client
from app.codat.deadline import codat_deadline
from app.codat.exceptions import (
    CodatConflict,
    CodatNotFound,
    CodatRejected,
    CodatUnavailable,
    UnavailableReason,
)
from app.codat.schemas import (
    AccountType,
    ConnectionStatus,
    RoutingInfo,
    SourceAccountPrototype,
    SourceAccountStatus,
)
from app.config import CodatSettings
from tests.codat.conftest import API_KEY, BASE_URL, FakeClock
from tests.codat.payloads import (
    COMPANY,
    COMPANY_ID,
    CONNECTION,
    CONNECTION_ID,
    CREDENTIALS,
    INTEGRATION,
    LINK_URL,
    OTHER_COMPANY_ID,
    OTP,
    PASSWORD,
    SOURCE_ACCOUNT,
    SYNC_SETTINGS,
    error,
)

COMPANY_PATH = f"/companies/{COMPANY_ID}"
CONNECTIONS_PATH = f"{COMPANY_PATH}/connections"
CONNECTION_PATH = f"{CONNECTIONS_PATH}/{CONNECTION_ID}"
ACCOUNTS_PATH = f"{CONNECTION_PATH}/connectionInfo/bankFeedAccounts"
CORRELATION_ID = error(500)["correlationId"]


def prototype(account_id: str = "acc-001", balance: str = "4002.10") -> SourceAccountPrototype:
    return SourceAccountPrototype(
        id=account_id,
        account_name="Operating account",
        account_type=AccountType.CHECKING,
        account_number="12345670",
        currency="USD",
        balance=Decimal(balance),
        routing_info=RoutingInfo(bank_code="021001088", type="rtn"),
    )


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


class TestSentRequests:
    async def test_create_company_posts_the_name_with_basic_auth_and_the_idempotency_key(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.post("/companies").respond(200, json=COMPANY)

        await client.create_company("Technicalium", idempotency_key="key-1", tags={"uid": "business-1"})

        request = route.calls.last.request
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(API_KEY.encode()).decode()
        assert request.headers["Idempotency-Key"] == "key-1"
        assert sent_json(route) == {"name": "Technicalium", "tags": {"uid": "business-1"}}

    async def test_create_connection_posts_the_platform_key(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.post(CONNECTIONS_PATH).respond(200, json=CONNECTION)

        await client.create_connection(COMPANY_ID, "hcws", idempotency_key="key-2")

        assert sent_json(route) == {"platformKey": "hcws"}
        assert route.calls.last.request.headers["Idempotency-Key"] == "key-2"

    async def test_create_source_account_sends_camel_case_and_a_numeric_balance(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.post(ACCOUNTS_PATH).respond(200, json=SOURCE_ACCOUNT)

        await client.create_source_account(COMPANY_ID, CONNECTION_ID, prototype(), idempotency_key="key-3")

        assert b'"balance":4002.1' in route.calls.last.request.content
        assert sent_json(route) == {
            "id": "acc-001",
            "accountName": "Operating account",
            "accountType": "checking",
            "accountNumber": "12345670",
            "currency": "USD",
            "balance": 4002.1,
            "routingInfo": {"bankCode": "021001088", "type": "rtn"},
        }

    async def test_list_connections_sends_paging_and_query(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        page = {"results": [CONNECTION], "pageNumber": 2, "pageSize": 10, "totalResults": 11, "_links": {}}
        route = router.get(CONNECTIONS_PATH).respond(200, json=page)

        result = await client.list_connections(COMPANY_ID, page=2, page_size=10, query="sourceType=BankFeed")

        assert dict(route.calls.last.request.url.params) == {
            "page": "2",
            "pageSize": "10",
            "query": "sourceType=BankFeed",
        }
        assert (result.page_number, result.total_results, result.results[0].id) == (2, 11, CONNECTION_ID)

    async def test_rename_patches_the_v1_body(self, client: CodatClient, router: respx.MockRouter) -> None:
        route = router.patch(f"{ACCOUNTS_PATH}/acc-001").respond(200, json=SOURCE_ACCOUNT)

        await client.rename_source_account(
            COMPANY_ID, CONNECTION_ID, "acc-001", "Payroll", idempotency_key="key-4"
        )

        assert sent_json(route) == {"id": "acc-001", "accountName": "Payroll"}
        assert route.calls.last.request.headers["Idempotency-Key"] == "key-4"

    async def test_generate_credentials_posts_an_empty_object(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.post(f"{ACCOUNTS_PATH}/credentials").respond(200, json=CREDENTIALS)

        credentials = await client.generate_credentials(COMPANY_ID, CONNECTION_ID, idempotency_key="key-5")

        assert route.calls.last.request.content == b"{}"
        assert credentials.username == "S0MW-TR0P-7DS0"
        assert credentials.password.get_secret_value() == PASSWORD

    async def test_deletes_send_no_body_and_no_idempotency_key(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        account = router.delete(f"{ACCOUNTS_PATH}/acc-001").respond(204)
        credentials = router.delete(f"{ACCOUNTS_PATH}/credentials").respond(204)

        await client.delete_source_account(COMPANY_ID, CONNECTION_ID, "acc-001")
        await client.revoke_credentials(COMPANY_ID, CONNECTION_ID)

        for route in (account, credentials):
            assert route.call_count == 1
            assert route.calls.last.request.content == b""
            assert "Idempotency-Key" not in route.calls.last.request.headers

    async def test_path_parameters_are_escaped(self, client: CodatClient, router: respx.MockRouter) -> None:
        route = router.delete(f"{ACCOUNTS_PATH}/acc%2F1%20x").respond(204)

        await client.delete_source_account(COMPANY_ID, CONNECTION_ID, "acc/1 x")

        assert route.call_count == 1

    @pytest.mark.parametrize("account_id", ["credentials", "batch", ""])
    async def test_account_ids_that_name_other_endpoints_are_refused(
        self, client: CodatClient, router: respx.MockRouter, account_id: str
    ) -> None:
        route = router.route().respond(204)

        with pytest.raises(ValueError, match="cannot be a source account id"):
            await client.delete_source_account(COMPANY_ID, CONNECTION_ID, account_id)

        assert route.call_count == 0


class TestParsing:
    async def test_company(self, client: CodatClient, router: respx.MockRouter) -> None:
        router.get(COMPANY_PATH).respond(200, json={**COMPANY, "dataConnections": [CONNECTION]})

        company = await client.get_company(COMPANY_ID)

        assert (company.id, company.name, company.redirect) == (
            COMPANY_ID,
            "Technicalium",
            COMPANY["redirect"],
        )
        assert company.created == datetime(2022, 11, 10, 10, 45, 18, 195052, tzinfo=UTC)
        assert company.data_connections[0].status is ConnectionStatus.PENDING_AUTH

    async def test_connection(self, client: CodatClient, router: respx.MockRouter) -> None:
        router.get(CONNECTION_PATH).respond(200, json=CONNECTION)

        connection = await client.get_connection(COMPANY_ID, CONNECTION_ID)

        assert connection.link_url == LINK_URL
        assert connection.status is ConnectionStatus.PENDING_AUTH
        assert (connection.integration_key, connection.source_type) == ("hcws", "BankFeed")
        assert connection.last_sync is None

    async def test_connection_without_integration_key(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        body = {key: value for key, value in CONNECTION.items() if key != "integrationKey"}
        router.get(CONNECTION_PATH).respond(200, json={**body, "status": "Linked"})

        connection = await client.get_connection(COMPANY_ID, CONNECTION_ID)

        assert connection.integration_key is None
        assert connection.status is ConnectionStatus.LINKED

    async def test_source_accounts_with_v2_dates_and_v1_datetimes(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        v1_dated = {
            **SOURCE_ACCOUNT,
            "id": "acc-002",
            "status": "connected",
            "feedStartDate": "2024-05-03T00:00:00Z",
        }
        undated = {**SOURCE_ACCOUNT, "id": "acc-003", "status": None, "feedStartDate": None}
        router.get(ACCOUNTS_PATH).respond(200, json=[SOURCE_ACCOUNT, v1_dated, undated])

        accounts = await client.list_source_accounts(COMPANY_ID, CONNECTION_ID)

        assert [a.feed_start_date for a in accounts] == [date(2024, 5, 1), date(2024, 5, 3), None]
        assert [a.status for a in accounts] == [
            SourceAccountStatus.PENDING,
            SourceAccountStatus.CONNECTED,
            None,
        ]
        assert accounts[0].balance == Decimal("99.99")
        assert accounts[0].account_type is AccountType.CHECKING
        assert accounts[0].account_info is not None
        assert accounts[0].account_info.nickname == "account 123"

    async def test_reprs_hide_the_link_and_the_password(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        router.get(CONNECTION_PATH).respond(200, json=CONNECTION)
        router.post(f"{ACCOUNTS_PATH}/credentials").respond(200, json=CREDENTIALS)

        connection = await client.get_connection(COMPANY_ID, CONNECTION_ID)
        credentials = await client.generate_credentials(COMPANY_ID, CONNECTION_ID, idempotency_key="k")

        assert OTP not in repr(connection)
        assert OTP not in str(connection)
        assert PASSWORD not in repr(credentials)
        assert PASSWORD not in str(credentials)
        assert PASSWORD not in credentials.model_dump_json()

    async def test_integration(self, client: CodatClient, router: respx.MockRouter) -> None:
        router.get("/integrations/hcws").respond(200, json=INTEGRATION)

        integration = await client.get_integration("hcws")

        assert (integration.key, integration.enabled, integration.source_type) == ("hcws", True, "BankFeed")

    async def test_sync_settings_say_whether_bank_feed_data_types_are_on(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.get("/profile/syncSettings").respond(200, json=SYNC_SETTINGS)

        settings = await client.get_sync_settings()
        assert settings.bank_feeds_enabled
        assert not settings.is_enabled("invoices")

        bank_accounts_only = [{"dataType": "bankAccounts", "fetchOnFirstLink": True, "syncSchedule": 24}]
        route.respond(200, json={"settings": bank_accounts_only})
        assert not (await client.get_sync_settings()).bank_feeds_enabled

    async def test_an_unexpected_body_is_unavailable_and_not_quoted(
        self, client: CodatClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
    ) -> None:
        router.get(CONNECTION_PATH).respond(200, json={**CONNECTION, "status": "Exploded"})
        caplog.set_level(logging.DEBUG)

        with pytest.raises(CodatUnavailable) as info:
            await client.get_connection(COMPANY_ID, CONNECTION_ID)

        assert info.value.reason is UnavailableReason.INVALID_RESPONSE
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__
        assert "codat.invalid_response" in caplog.text
        assert "status" in caplog.text
        assert OTP not in caplog.text


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (400, CodatRejected),
            (401, CodatRejected),
            (402, CodatRejected),
            (403, CodatRejected),
            (404, CodatNotFound),
            (409, CodatConflict),
            (422, CodatRejected),
        ],
    )
    async def test_a_4xx_is_rejected_once_with_codats_fields(
        self, client: CodatClient, router: respx.MockRouter, status: int, expected: type[CodatRejected]
    ) -> None:
        route = router.post(CONNECTIONS_PATH).respond(status, json=error(status, "No company was found"))

        with pytest.raises(CodatRejected) as info:
            await client.create_connection(COMPANY_ID, "hcws", idempotency_key="k")

        assert type(info.value) is expected
        assert (info.value.status_code, info.value.correlation_id) == (status, CORRELATION_ID)
        assert info.value.error == "No company was found"
        assert route.call_count == 1

    async def test_validation_messages_and_item_ids_are_kept(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        validation = {
            "errors": [
                {
                    "itemId": "acc-001",
                    "message": "Currency EUR is not supported",
                    "validatorName": "Currency",
                },
                {"itemId": None, "message": "Balance is required", "validatorName": None},
            ],
            "warnings": None,
        }
        router.post(ACCOUNTS_PATH).respond(400, json=error(400, validation=validation))

        with pytest.raises(CodatRejected) as info:
            await client.create_source_account(COMPANY_ID, CONNECTION_ID, prototype(), idempotency_key="k")

        assert info.value.validation_errors == ["Currency EUR is not supported", "Balance is required"]
        assert info.value.item_ids == ["acc-001"]

    @pytest.mark.parametrize(
        "body", [b"<html>Bad Gateway</html>", b"{}", b'{"canBeRetried": "True"}', b"[1]"]
    )
    async def test_odd_error_bodies_are_tolerated(
        self, client: CodatClient, router: respx.MockRouter, body: bytes
    ) -> None:
        router.get(COMPANY_PATH).respond(400, content=body)

        with pytest.raises(CodatRejected) as info:
            await client.get_company(COMPANY_ID)

        assert (info.value.status_code, info.value.error, info.value.correlation_id) == (400, None, None)
        assert info.value.validation_errors == []


class TestRetries:
    @pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
    async def test_a_transient_status_is_retried_with_the_same_idempotency_key(
        self, client: CodatClient, router: respx.MockRouter, clock: FakeClock, status: int
    ) -> None:
        failure = httpx.Response(status, json=error(status))
        route = router.post(CONNECTIONS_PATH).mock(
            side_effect=[failure, failure, httpx.Response(200, json=CONNECTION)]
        )

        connection = await client.create_connection(COMPANY_ID, "hcws", idempotency_key="key-7")

        assert connection.id == CONNECTION_ID
        assert [call.request.headers["Idempotency-Key"] for call in route.calls] == ["key-7"] * 3
        assert len(clock.sleeps) == 2

    async def test_transport_errors_and_timeouts_are_retried(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.get(CONNECTION_PATH).mock(
            side_effect=[
                httpx.ConnectError("refused"),
                httpx.ReadTimeout("slow"),
                httpx.Response(200, json=CONNECTION),
            ]
        )

        await client.get_connection(COMPANY_ID, CONNECTION_ID)

        assert route.call_count == 3

    async def test_backoff_is_exponential_and_jittered(
        self, client: CodatClient, router: respx.MockRouter, clock: FakeClock
    ) -> None:
        router.get(COMPANY_PATH).respond(500, json=error(500))

        with pytest.raises(CodatUnavailable):
            await client.get_company(COMPANY_ID)

        first, second, third = clock.sleeps
        assert 0.25 <= first <= 0.5
        assert 0.5 <= second <= 1.0
        assert 1.0 <= third <= 2.0

    async def test_retry_after_in_seconds_is_honoured(
        self, client: CodatClient, router: respx.MockRouter, clock: FakeClock
    ) -> None:
        router.get(COMPANY_PATH).mock(
            side_effect=[
                httpx.Response(429, json=error(429), headers={"Retry-After": "7"}),
                httpx.Response(200, json=COMPANY),
            ]
        )

        await client.get_company(COMPANY_ID)

        assert clock.sleeps == [7.0]

    async def test_retry_after_as_an_http_date_is_honoured(
        self, client: CodatClient, router: respx.MockRouter, clock: FakeClock
    ) -> None:
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=12), usegmt=True)
        router.get(COMPANY_PATH).mock(
            side_effect=[
                httpx.Response(503, json=error(503), headers={"Retry-After": when}),
                httpx.Response(200, json=COMPANY),
            ]
        )

        await client.get_company(COMPANY_ID)

        assert 10 <= clock.sleeps[0] <= 13

    async def test_exhausted_retries_raise_unavailable_with_codats_details(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.post(CONNECTIONS_PATH).respond(503, json=error(503))

        with pytest.raises(CodatUnavailable) as info:
            await client.create_connection(COMPANY_ID, "hcws", idempotency_key="k")

        assert route.call_count == 4
        assert info.value.reason is UnavailableReason.SERVER_ERROR
        assert (info.value.status_code, info.value.correlation_id) == (503, CORRELATION_ID)
        assert info.value.retry_after_seconds == 5

    @pytest.mark.parametrize(
        ("failure", "reason"),
        [
            (httpx.ConnectError, UnavailableReason.TRANSPORT_ERROR),
            (httpx.ConnectTimeout, UnavailableReason.TIMEOUT),
            (httpx.ReadTimeout, UnavailableReason.TIMEOUT),
        ],
    )
    async def test_exhausted_network_failures_raise_unavailable(
        self,
        client: CodatClient,
        router: respx.MockRouter,
        failure: type[Exception],
        reason: UnavailableReason,
    ) -> None:
        route = router.get(COMPANY_PATH).mock(side_effect=failure)

        with pytest.raises(CodatUnavailable) as info:
            await client.get_company(COMPANY_ID)

        assert route.call_count == 4
        assert (info.value.reason, info.value.status_code) == (reason, None)
        assert isinstance(info.value.__cause__, failure)

    async def test_a_409_on_a_replay_means_still_in_progress_and_is_retried(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.post("/companies").mock(
            side_effect=[
                httpx.ReadTimeout("lost answer"),
                httpx.Response(409, json=error(409, "Request in progress")),
                httpx.Response(200, json=COMPANY),
            ]
        )

        await client.create_company("Technicalium", idempotency_key="key-8")

        assert [call.request.headers["Idempotency-Key"] for call in route.calls] == ["key-8"] * 3

    async def test_max_attempts_comes_from_settings(
        self, make_client: Callable[..., CodatClient], router: respx.MockRouter
    ) -> None:
        route = router.get(COMPANY_PATH).respond(502, json=error(502))

        with pytest.raises(CodatUnavailable):
            await make_client(max_attempts=2).get_company(COMPANY_ID)

        assert route.call_count == 2


class TestBatch:
    @staticmethod
    def created(account_id: str) -> dict[str, object]:
        account = {**SOURCE_ACCOUNT, "id": account_id}
        return {
            "sourceAccountId": account_id,
            "result": {"statusCode": 201, "error": None, "account": account},
        }

    @staticmethod
    def failed(account_id: str) -> dict[str, object]:
        message = "A bank account already exists with the same Id"
        return {"sourceAccountId": account_id, "result": {"statusCode": "409", "error": message}}

    async def test_sends_a_list_and_reads_201(self, client: CodatClient, router: respx.MockRouter) -> None:
        route = router.post(f"{ACCOUNTS_PATH}/batch").respond(
            201, json=[self.created("a-1"), self.created("a-2")]
        )

        results = await client.create_source_accounts(
            COMPANY_ID, CONNECTION_ID, [prototype("a-1"), prototype("a-2", "0")], idempotency_key="key-9"
        )

        assert [item["id"] for item in sent_json(route)] == ["a-1", "a-2"]
        assert [item["balance"] for item in sent_json(route)] == [4002.1, 0]
        assert [(r.source_account_id, r.status_code, r.created) for r in results] == [
            ("a-1", 201, True),
            ("a-2", 201, True),
        ]
        assert results[0].account is not None
        assert results[0].account.status is SourceAccountStatus.PENDING

    async def test_207_mixes_created_and_failed_items(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        router.post(f"{ACCOUNTS_PATH}/batch").respond(207, json=[self.created("a-1"), self.failed("a-2")])

        ok, failed = await client.create_source_accounts(
            COMPANY_ID, CONNECTION_ID, [prototype("a-1"), prototype("a-2")], idempotency_key="k"
        )

        assert ok.created
        assert ok.error is None
        assert (failed.status_code, failed.account, failed.created) == (409, None, False)
        assert failed.error == "A bank account already exists with the same Id"

    async def test_409_with_every_item_failed_is_a_result_not_an_error(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.post(f"{ACCOUNTS_PATH}/batch").respond(
            409, json=[self.failed("a-1"), self.failed("a-2")]
        )

        results = await client.create_source_accounts(
            COMPANY_ID, CONNECTION_ID, [prototype("a-1"), prototype("a-2")], idempotency_key="k"
        )

        assert [(r.source_account_id, r.status_code) for r in results] == [("a-1", 409), ("a-2", 409)]
        assert route.call_count == 1

    async def test_409_with_an_error_body_is_a_conflict(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        router.post(f"{ACCOUNTS_PATH}/batch").respond(409, json=error(409))

        with pytest.raises(CodatConflict):
            await client.create_source_accounts(COMPANY_ID, CONNECTION_ID, [prototype()], idempotency_key="k")


class TestDeadline:
    async def test_calls_inside_the_block_share_one_budget(
        self, client: CodatClient, router: respx.MockRouter, clock: FakeClock
    ) -> None:
        company = router.get(COMPANY_PATH).respond(200, json=COMPANY)
        connection = router.get(CONNECTION_PATH).respond(200, json=CONNECTION)

        with codat_deadline(5, clock=clock):
            await client.get_company(COMPANY_ID)
            clock.now += 6
            with pytest.raises(CodatUnavailable) as info:
                await client.get_connection(COMPANY_ID, CONNECTION_ID)

        assert info.value.reason is UnavailableReason.DEADLINE_EXCEEDED
        assert (company.call_count, connection.call_count) == (1, 0)

    async def test_backoff_never_sleeps_past_the_deadline(
        self, client: CodatClient, router: respx.MockRouter, clock: FakeClock
    ) -> None:
        route = router.get(COMPANY_PATH).respond(503, json=error(503), headers={"Retry-After": "4"})

        with codat_deadline(10, clock=clock), pytest.raises(CodatUnavailable) as info:
            await client.get_company(COMPANY_ID)

        assert clock.sleeps == [4.0, 4.0]
        assert route.call_count == 3
        assert (info.value.reason, info.value.retry_after_seconds) == (UnavailableReason.SERVER_ERROR, 4)

    async def test_a_retry_after_beyond_the_budget_gives_up_at_once(
        self, make_client: Callable[..., CodatClient], router: respx.MockRouter, clock: FakeClock
    ) -> None:
        route = router.get(COMPANY_PATH).respond(429, json=error(429), headers={"Retry-After": "30"})

        with pytest.raises(CodatUnavailable) as info:
            await make_client(request_deadline_seconds=20).get_company(COMPANY_ID)

        assert (route.call_count, clock.sleeps) == (1, [])
        assert (info.value.reason, info.value.retry_after_seconds) == (UnavailableReason.RATE_LIMITED, 30)

    async def test_an_attempt_is_cut_when_the_budget_runs_out(
        self, client: CodatClient, router: respx.MockRouter, clock: FakeClock
    ) -> None:
        sent: list[httpx.Request] = []

        async def hang(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        router.get(COMPANY_PATH).mock(side_effect=hang)

        with codat_deadline(0.01, clock=clock), pytest.raises(CodatUnavailable) as info:
            await client.get_company(COMPANY_ID)

        assert info.value.reason is UnavailableReason.DEADLINE_EXCEEDED
        assert (len(sent), clock.sleeps) == (1, [])

    async def test_a_nested_block_never_extends_the_outer_one(self, clock: FakeClock) -> None:
        with codat_deadline(5, clock=clock) as outer:
            with codat_deadline(50, clock=clock) as inner:
                assert inner is outer
            with codat_deadline(1, clock=clock) as tighter:
                assert tighter.remaining() == 1


class TestConcurrency:
    async def test_at_most_ten_calls_are_in_flight_per_company(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        gate = asyncio.Event()
        in_flight = peak = 0

        async def slow(request: httpx.Request) -> httpx.Response:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await gate.wait()
            in_flight -= 1
            return httpx.Response(200, json=CONNECTION)

        busy = router.get(CONNECTION_PATH).mock(side_effect=slow)
        router.get(f"/companies/{OTHER_COMPANY_ID}/connections/{CONNECTION_ID}").respond(200, json=CONNECTION)
        calls = [asyncio.create_task(client.get_connection(COMPANY_ID, CONNECTION_ID)) for _ in range(25)]

        await until(lambda: in_flight == 10)
        # Another company is not held up (wait_for only turns a hang into a failure).
        await asyncio.wait_for(client.get_connection(OTHER_COMPANY_ID, CONNECTION_ID), timeout=5)
        for _ in range(50):
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*calls)

        assert peak == 10
        assert busy.call_count == 25


class TestCircuitBreaker:
    async def open_circuit(self, client: CodatClient) -> None:
        for _ in range(5):
            with pytest.raises(CodatUnavailable):
                await client.get_company(COMPANY_ID)

    async def test_opens_after_five_unavailable_outcomes_and_fails_fast(
        self, make_client: Callable[..., CodatClient], router: respx.MockRouter, clock: FakeClock
    ) -> None:
        client = make_client(max_attempts=1)
        route = router.get(COMPANY_PATH).respond(503, json=error(503))
        await self.open_circuit(client)

        with pytest.raises(CodatUnavailable) as info:
            await client.get_company(COMPANY_ID)
        clock.now += 4
        with pytest.raises(CodatUnavailable) as later:
            await client.get_connection(COMPANY_ID, CONNECTION_ID)

        assert route.call_count == 5
        assert (info.value.reason, info.value.retry_after_seconds) == (UnavailableReason.CIRCUIT_OPEN, 10)
        assert (later.value.reason, later.value.retry_after_seconds) == (UnavailableReason.CIRCUIT_OPEN, 6)

    async def test_the_attempts_of_one_call_count(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        route = router.get(COMPANY_PATH).respond(500, json=error(500))

        with pytest.raises(CodatUnavailable):
            await client.get_company(COMPANY_ID)
        with pytest.raises(CodatUnavailable) as info:
            await client.get_company(COMPANY_ID)

        assert route.call_count == 5
        assert info.value.reason is UnavailableReason.CIRCUIT_OPEN

    async def test_half_open_lets_one_trial_through_then_closes(
        self, make_client: Callable[..., CodatClient], router: respx.MockRouter, clock: FakeClock
    ) -> None:
        client = make_client(max_attempts=1)
        route = router.get(COMPANY_PATH).respond(503, json=error(503))
        await self.open_circuit(client)
        clock.now += 10
        gate = asyncio.Event()
        sent: list[httpx.Request] = []

        async def healthy_again(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            await gate.wait()
            return httpx.Response(200, json=COMPANY)

        route.mock(side_effect=healthy_again)
        trial = asyncio.create_task(client.get_company(COMPANY_ID))
        await until(lambda: len(sent) == 1)
        with pytest.raises(CodatUnavailable) as info:
            await client.get_company(COMPANY_ID)
        gate.set()
        await trial
        await client.get_company(COMPANY_ID)

        assert info.value.reason is UnavailableReason.CIRCUIT_OPEN
        assert len(sent) == 2

    async def test_a_failed_trial_opens_it_again(
        self, make_client: Callable[..., CodatClient], router: respx.MockRouter, clock: FakeClock
    ) -> None:
        client = make_client(max_attempts=1)
        route = router.get(COMPANY_PATH).respond(503, json=error(503))
        await self.open_circuit(client)
        clock.now += 10

        with pytest.raises(CodatUnavailable) as trial:
            await client.get_company(COMPANY_ID)
        with pytest.raises(CodatUnavailable) as info:
            await client.get_company(COMPANY_ID)

        assert trial.value.reason is UnavailableReason.SERVER_ERROR
        assert (info.value.reason, info.value.retry_after_seconds) == (UnavailableReason.CIRCUIT_OPEN, 10)
        assert route.call_count == 6

    @pytest.mark.parametrize("healthy_status", [404, 429])
    async def test_answers_other_than_408_and_5xx_reset_the_count(
        self, make_client: Callable[..., CodatClient], router: respx.MockRouter, healthy_status: int
    ) -> None:
        client = make_client(max_attempts=1)
        failure = httpx.Response(503, json=error(503))
        answers = [failure] * 4 + [httpx.Response(healthy_status, json=error(healthy_status))] + [failure] * 5
        route = router.get(COMPANY_PATH).mock(side_effect=answers)

        for _ in answers:
            with pytest.raises((CodatUnavailable, CodatRejected)):
                await client.get_company(COMPANY_ID)

        assert route.call_count == 10


class TestLogging:
    async def test_logs_hold_no_key_link_otp_or_password(
        self, client: CodatClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        router.post(CONNECTIONS_PATH).mock(
            side_effect=[httpx.Response(503, json=error(503)), httpx.Response(200, json=CONNECTION)]
        )
        router.get(CONNECTION_PATH).respond(200, json=CONNECTION)
        router.post(f"{ACCOUNTS_PATH}/credentials").respond(200, json=CREDENTIALS)
        router.post(ACCOUNTS_PATH).respond(400, json=error(400, f"Open {LINK_URL}"))

        await client.create_connection(COMPANY_ID, "hcws", idempotency_key="k1")
        await client.get_connection(COMPANY_ID, CONNECTION_ID)
        await client.generate_credentials(COMPANY_ID, CONNECTION_ID, idempotency_key="k2")
        with pytest.raises(CodatRejected):
            await client.create_source_account(COMPANY_ID, CONNECTION_ID, prototype(), idempotency_key="k3")

        logged = caplog.text + "".join(str(vars(record)) for record in caplog.records)
        encoded_key = base64.b64encode(API_KEY.encode()).decode()
        for secret in (API_KEY, encoded_key, OTP, LINK_URL, PASSWORD, "12345670"):
            assert secret not in logged
        assert "codat.attempt" in caplog.text

    async def test_a_retry_is_a_warning_with_the_path_template_and_correlation_id(
        self, client: CodatClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
    ) -> None:
        router.get(CONNECTION_PATH).mock(
            side_effect=[
                httpx.Response(429, json=error(429), headers={"Retry-After": "2"}),
                httpx.Response(200, json=CONNECTION),
            ]
        )

        await client.get_connection(COMPANY_ID, CONNECTION_ID)

        (retry,) = [r for r in caplog.records if r.getMessage().startswith("codat.retry")]
        fields = vars(retry)
        assert retry.levelno == logging.WARNING
        assert fields["path"] == "/companies/{companyId}/connections/{connectionId}"
        assert (fields["method"], fields["attempt"], fields["status"]) == ("GET", 1, 429)
        assert (fields["correlation_id"], fields["delay"]) == (CORRELATION_ID, 2.0)
        assert COMPANY_ID not in retry.getMessage()


class TestMetrics:
    async def test_calls_are_counted_by_operation_and_outcome(
        self, client: CodatClient, router: respx.MockRouter
    ) -> None:
        def count(outcome: str) -> float:
            labels = {"operation": "get_integration", "outcome": outcome}
            return REGISTRY.get_sample_value("codat_calls_total", labels) or 0.0

        before = count("ok"), count("rejected")
        router.get("/integrations/hcws").respond(200, json=INTEGRATION)
        router.get("/integrations/nope").respond(404, json=error(404))

        await client.get_integration("hcws")
        with pytest.raises(CodatNotFound):
            await client.get_integration("nope")

        assert (count("ok"), count("rejected")) == (before[0] + 1, before[1] + 1)


class TestBuildHttpClient:
    async def test_sets_base_url_auth_header_and_timeouts(self, settings: CodatSettings) -> None:
        async with build_http_client(settings) as http:
            assert str(http.base_url).rstrip("/") == BASE_URL
            assert http.headers["Authorization"] == "Basic " + base64.b64encode(API_KEY.encode()).decode()
            assert http.timeout == httpx.Timeout(10.0, connect=3.0)

    def test_refuses_a_missing_api_key(self) -> None:
        with pytest.raises(ValueError, match="api_key"):
            build_http_client(CodatSettings(api_key=None))
