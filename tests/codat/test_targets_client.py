"""The client's operations for the bank-feed targets beyond QuickBooks Online (account mapping, company
information, Sage's OTP and authorization PUT, unlinking), driven against the embedded sandbox, whose every
answer is checked against Codat's OpenAPI files."""

import asyncio
import logging
import traceback
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from pydantic import SecretStr

from app.codat.client import CodatClient, build_http_client
from app.codat.exceptions import CodatNotFound, CodatRejected, CodatUnavailable
from app.codat.schemas import (
    AccountType,
    BankFeedMapping,
    Connection,
    ConnectionStatus,
    SourceAccountPrototype,
)
from app.config import DEV_SANDBOX_API_KEY, CodatSettings
from app.sandbox import SandboxConfig, create_sandbox_app
from tests.codat.payloads import COMPANY_ID, CONNECTION_ID, OTP
from tests.contract import ContractChecked, contract_checked

SANDBOX_URL = "http://codat-sandbox"
PLATFORM_NAMES = {
    "hcws": "QuickBooks Online Bank Feeds",
    "gbol": "Xero",
    "akxx": "Oracle NetSuite",
    "fbrh": "FreeAgent",
    "qudb": "Exact (Netherlands)",
    "olpr": "Sage Bank Feeds",
}


def key() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def sandbox() -> AsyncIterator[ContractChecked]:
    app = contract_checked(create_sandbox_app(SandboxConfig(seed=11)))
    yield app
    assert app.violations == [], "the sandbox broke Codat's contract"


@pytest.fixture
async def codat(sandbox: ContractChecked) -> AsyncIterator[CodatClient]:
    settings = CodatSettings(api_key=SecretStr(DEV_SANDBOX_API_KEY), base_url=SANDBOX_URL)
    async with build_http_client(settings, transport=httpx.ASGITransport(app=sandbox)) as http:
        yield CodatClient(http, settings)


@pytest.fixture
async def smb(sandbox: ContractChecked) -> AsyncIterator[httpx.AsyncClient]:
    """The SMB's browser on the sandbox's pages (Codat Link, the Sage stand-in)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url=SANDBOX_URL) as http:
        yield http


async def connect(codat: CodatClient, platform_key: str) -> Connection:
    company = await codat.create_company("Dave's Bakery", idempotency_key=key())
    return await codat.create_connection(company.id, platform_key, idempotency_key=key())


async def add_account(
    codat: CodatClient, connection: Connection, account_id: str, currency: str = "GBP"
) -> None:
    account = SourceAccountPrototype(
        id=account_id,
        account_name=f"Account {account_id}",
        account_type=AccountType.CHECKING,
        account_number="12345670",
        sort_code="12-34-56",
        currency=currency,
        balance=Decimal("100.25"),
    )
    await codat.create_source_account(company_of(connection), connection.id, account, idempotency_key=key())


def company_of(connection: Connection) -> str:
    # The linkUrl is the only place a Connection names its company.
    return urlsplit(connection.link_url).path.split("/companies/")[1].split("/")[0]


async def authorize(smb: httpx.AsyncClient, connection: Connection) -> None:
    """The SMB opens the linkUrl and allows access on the platform's consent screen."""
    assert (await smb.get(connection.link_url)).status_code == 200
    otp = parse_qs(urlsplit(connection.link_url).query)["otp"][0]
    consent = connection.link_url.split("/start?")[0] + "/consent"
    allowed = await smb.post(consent, data={"otp": otp, "decision": "allow"})
    assert allowed.status_code == 303, allowed.text


async def mappings(codat: CodatClient, connection: Connection) -> dict[str, BankFeedMapping]:
    listed = await codat.get_bank_account_mapping(company_of(connection), connection.id)
    return {mapping.source_account_id: mapping for mapping in listed}


@pytest.fixture
async def xero(codat: CodatClient, smb: httpx.AsyncClient) -> Connection:
    """A Xero connection with a GBP and a USD source account, authorized by the SMB."""
    connection = await connect(codat, "gbol")
    await add_account(codat, connection, "gbp-1")
    await add_account(codat, connection, "usd-1", currency="USD")
    await authorize(smb, connection)
    return connection


class TestCreateConnection:
    @pytest.mark.parametrize("platform_key", sorted(PLATFORM_NAMES))
    async def test_each_target_connects_under_its_own_key(
        self, codat: CodatClient, platform_key: str
    ) -> None:
        connection = await connect(codat, platform_key)

        assert (connection.integration_key, connection.platform_name) == (
            platform_key,
            PLATFORM_NAMES[platform_key],
        )
        assert connection.status is ConnectionStatus.PENDING_AUTH


class TestBankAccountMapping:
    async def test_no_options_until_the_smb_authorizes_then_only_matching_targets(
        self, codat: CodatClient, smb: httpx.AsyncClient
    ) -> None:
        connection = await connect(codat, "gbol")
        await add_account(codat, connection, "gbp-1")
        await add_account(codat, connection, "usd-1", currency="USD")

        before = (await mappings(codat, connection))["gbp-1"]
        await authorize(smb, connection)
        after = await mappings(codat, connection)

        assert (before.source_account_name, before.source_balance, before.source_currency) == (
            "Account gbp-1",
            Decimal("100.25"),
            "GBP",
        )
        assert (before.status, before.target_account_id, before.target_account_options) == (
            "pending",
            None,
            None,
        )
        gbp_options = after["gbp-1"].target_account_options or []
        assert [o.name for o in gbp_options] == ["Business Current Account", "Business Savings"]
        assert all(o.id for o in gbp_options)
        assert [o.name for o in after["usd-1"].target_account_options or []] == ["USD Account"]

    async def test_a_mapping_answers_connecting_then_turns_connected(
        self, codat: CodatClient, xero: Connection
    ) -> None:
        target = ((await mappings(codat, xero))["gbp-1"].target_account_options or [])[0]
        start = date.today() - timedelta(days=30)
        idempotency_key = key()

        mapped = await codat.create_bank_account_mapping(
            company_of(xero), xero.id, "gbp-1", target.id, start, idempotency_key=idempotency_key
        )
        await asyncio.sleep(0)  # the platform confirms the feed on the sandbox's next turn
        listed = (await mappings(codat, xero))["gbp-1"]
        replayed = await codat.create_bank_account_mapping(
            company_of(xero), xero.id, "gbp-1", target.id, start, idempotency_key=idempotency_key
        )

        assert (mapped.source_account_id, mapped.target_account_id, mapped.status, mapped.error) == (
            "gbp-1",
            target.id,
            "connecting",
            None,
        )
        assert (listed.status, listed.target_account_name, listed.feed_start_date) == (
            "connected",
            "Business Current Account",
            start,
        )
        assert replayed == mapped  # the same key replays Codat's first answer

    async def test_no_target_creates_a_new_account_in_the_books(
        self, codat: CodatClient, xero: Connection
    ) -> None:
        start = datetime.combine(date.today(), datetime.min.time())

        mapped = await codat.create_bank_account_mapping(
            company_of(xero), xero.id, "usd-1", None, start, idempotency_key=key()
        )
        await asyncio.sleep(0)

        listed = (await mappings(codat, xero))["usd-1"]
        assert mapped.target_account_id is not None
        assert (listed.target_account_id, listed.target_account_name, listed.status) == (
            mapped.target_account_id,
            "Account usd-1",
            "connected",
        )

    async def test_a_target_in_another_currency_is_refused_naming_target_account_id(
        self, codat: CodatClient, xero: Connection
    ) -> None:
        usd_target = ((await mappings(codat, xero))["usd-1"].target_account_options or [])[0]

        with pytest.raises(CodatRejected) as refused:
            await codat.create_bank_account_mapping(
                company_of(xero), xero.id, "gbp-1", usd_target.id, None, idempotency_key=key()
            )

        assert refused.value.status_code == 400
        assert refused.value.item_ids == ["targetAccountId"]
        assert "same currency" in refused.value.validation_errors[0]
        assert (await mappings(codat, xero))["gbp-1"].status == "pending"

    async def test_qbo_maps_inside_quickbooks(self, codat: CodatClient) -> None:
        connection = await connect(codat, "hcws")

        with pytest.raises(CodatRejected) as refused:
            await codat.get_bank_account_mapping(company_of(connection), connection.id)

        assert refused.value.status_code == 400


class TestCompanyInformation:
    async def test_xero_tells_the_company_from_its_books(self, codat: CodatClient, xero: Connection) -> None:
        info = await codat.get_company_information(company_of(xero), xero.id)

        assert (info.company_name, info.base_currency, info.multicurrency_enabled) == (
            "Dave's Bakery",
            "GBP",
            True,
        )
        assert "GBP" in (info.currencies or [])

    async def test_before_authorization_it_is_refused(self, codat: CodatClient) -> None:
        connection = await connect(codat, "gbol")

        with pytest.raises(CodatRejected) as refused:
            await codat.get_company_information(company_of(connection), connection.id)

        assert refused.value.status_code == 400


class TestOtp:
    async def test_sage_accepts_the_otp_the_smb_types_in(
        self, codat: CodatClient, smb: httpx.AsyncClient, sandbox: ContractChecked
    ) -> None:
        connection = await connect(codat, "olpr")
        await add_account(codat, connection, "gbp-1")

        otp = await codat.generate_otp(company_of(connection), connection.id, idempotency_key=key())
        signed_in = await smb.post(
            "/sage/sign-in", data={"connectionId": connection.id, "otp": otp.otp.get_secret_value()}
        )

        assert otp.expiry > sandbox.state.sandbox.clock.now()
        assert otp.expiry.tzinfo is not None
        assert signed_in.status_code == 200
        assert "Account gbp-1" in signed_in.text

    async def test_the_otp_reaches_no_log_line_and_no_repr(
        self, codat: CodatClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        connection = await connect(codat, "olpr")
        caplog.set_level(logging.DEBUG)

        otp = await codat.generate_otp(company_of(connection), connection.id, idempotency_key=key())

        secret = otp.otp.get_secret_value()
        logged = caplog.text + "".join(str(vars(record)) for record in caplog.records)
        assert "codat.attempt" in caplog.text
        assert secret not in logged
        assert secret not in repr(otp)
        assert secret not in str(otp)

    async def test_qbo_gets_no_otp(self, codat: CodatClient) -> None:
        connection = await connect(codat, "hcws")

        with pytest.raises(CodatRejected) as refused:
            await codat.generate_otp(company_of(connection), connection.id, idempotency_key=key())

        assert refused.value.status_code == 400
        assert not isinstance(refused.value, CodatNotFound)

    async def test_an_otp_in_an_unreadable_answer_is_in_no_error_and_no_log(
        self, client: CodatClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        path = f"/companies/{COMPANY_ID}/connections/{CONNECTION_ID}/bankFeeds/otp"
        # A number where Codat's spec says string: pydantic's own message would quote it.
        router.post(path).respond(200, json={"otp": int(OTP), "expiry": "2026-04-08T10:30:00Z"})

        with pytest.raises(CodatUnavailable) as unreadable:
            await client.generate_otp(COMPANY_ID, CONNECTION_ID, idempotency_key=key())

        printed = "".join(traceback.format_exception(unreadable.value))
        assert "codat.invalid_response" in caplog.text
        assert OTP not in caplog.text + "".join(str(vars(record)) for record in caplog.records)
        assert OTP not in printed
        assert unreadable.value.__cause__ is None


class TestAuthorization:
    async def test_an_id_sage_issued_authorizes_once(
        self, codat: CodatClient, smb: httpx.AsyncClient, sandbox: ContractChecked
    ) -> None:
        connection = await connect(codat, "olpr")
        sandbox.state.sandbox.set_settings(sageLoginUrl="https://fintech.example/sage-login")
        redirect = await smb.post("/sage/web-login")
        authorization_id = parse_qs(urlsplit(redirect.headers["location"]).query)["authorizationId"][0]

        authorized = await codat.update_connection_authorization(
            company_of(connection), connection.id, authorization_id
        )
        with pytest.raises(CodatNotFound) as spent:
            await codat.update_connection_authorization(
                company_of(connection), connection.id, authorization_id
            )

        assert (authorized.id, authorized.status) == (connection.id, ConnectionStatus.PENDING_AUTH)
        assert spent.value.item_ids == ["authorizationId"]

    async def test_an_unknown_id_is_not_found_naming_authorization_id(self, codat: CodatClient) -> None:
        connection = await connect(codat, "olpr")

        with pytest.raises(CodatNotFound) as unknown:
            await codat.update_connection_authorization(company_of(connection), connection.id, "made-up")

        assert unknown.value.item_ids == ["authorizationId"]

    async def test_it_is_never_retried(self, client: CodatClient, router: respx.MockRouter) -> None:
        path = f"/companies/{COMPANY_ID}/connections/{CONNECTION_ID}/authorization"
        route = router.put(path).respond(503)

        with pytest.raises(CodatUnavailable):
            await client.update_connection_authorization(COMPANY_ID, CONNECTION_ID, "auth-1")

        assert route.call_count == 1


class TestUnlink:
    async def test_a_linked_connection_is_unlinked_and_a_retry_replays(
        self, codat: CodatClient, xero: Connection
    ) -> None:
        idempotency_key = key()

        unlinked = await codat.unlink_connection(company_of(xero), xero.id, idempotency_key=idempotency_key)
        again = await codat.unlink_connection(company_of(xero), xero.id, idempotency_key=idempotency_key)
        read = await codat.get_connection(company_of(xero), xero.id)

        assert unlinked.status is ConnectionStatus.UNLINKED
        assert again.status is ConnectionStatus.UNLINKED
        assert read.status is ConnectionStatus.UNLINKED

    async def test_a_connection_not_linked_is_refused_naming_status(self, codat: CodatClient) -> None:
        connection = await connect(codat, "gbol")

        with pytest.raises(CodatRejected) as refused:
            await codat.unlink_connection(company_of(connection), connection.id, idempotency_key=key())

        assert (refused.value.status_code, refused.value.item_ids) == (400, ["status"])
