"""The platforms beyond QuickBooks Online driven through Codat's official SDK (codat-bankfeeds): account
mapping, company information and Sage's OTP. The SDK validates each answer against Codat's models; the
contract checker validates it against the OpenAPI files. ``PUT …/authorization`` is a Platform API operation
the Bank Feeds SDK does not carry: Codat's Platform SDK (codat-platform) drives it."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from codat_bankfeeds import CodatBankFeeds
from codat_bankfeeds.models import errors, shared
from codat_bankfeeds.utils import RetryConfig
from codat_platform import CodatPlatform
from codat_platform.models import errors as platform_errors
from codat_platform.models import shared as platform_shared

from app.sandbox import SandboxConfig
from tests.sandbox.support import basic_auth, serve_in_thread


@pytest.fixture
def served(make_sandbox_app) -> Iterator[tuple[object, str]]:
    app = make_sandbox_app(SandboxConfig(seed=16))
    with serve_in_thread(app) as url:
        yield app, url


@pytest.fixture
def codat(served) -> Iterator[CodatBankFeeds]:
    security = shared.Security(auth_header=basic_auth())
    with CodatBankFeeds(
        security=security, server_url=served[1], retry_config=RetryConfig("none", None, False)
    ) as sdk:
        yield sdk


def source_account(account_id: str, currency: str, account_type: str = "checking") -> dict:
    return {
        "id": account_id,
        "account_name": f"Account {account_id}",
        "account_type": account_type,
        "account_number": "12345670",
        "sort_code": "12-34-56",
        "currency": currency,
        "balance": 250,
    }


def connect(codat: CodatBankFeeds, platform_key: str, *accounts: dict) -> dict[str, str]:
    company = codat.companies.create(request={"name": "Dave's Bakery"})
    connection = codat.connections.create(
        request={"company_id": company.id, "request_body": {"platform_key": platform_key}}
    )
    ids = {"company_id": company.id, "connection_id": connection.id}
    if accounts:
        codat.source_accounts.create_batch(request={**ids, "request_body": list(accounts)})
    return {**ids, "link_url": connection.link_url}


def allow_access(link_url: str) -> None:
    """The SMB allows access on the platform's consent screen (what the browser test clicks)."""
    otp = parse_qs(urlsplit(link_url).query)["otp"][0]
    consent = link_url.replace(f"/start?otp={otp}", "/consent")
    assert httpx.post(consent, data={"otp": otp, "decision": "allow"}).status_code == 303


def test_xero_mapping_through_the_sdk(codat: CodatBankFeeds) -> None:
    connection = connect(
        codat, "gbol", source_account("gbp-1", "GBP"), source_account("card", "GBP", "creditCard")
    )
    ids = {"company_id": connection["company_id"], "connection_id": connection["connection_id"]}
    before = codat.account_mapping.get(request=ids)
    assert [(m.source_account_id, m.status, m.target_account_options) for m in before] == [
        ("gbp-1", "pending", None),
        ("card", "pending", None),
    ]

    allow_access(connection["link_url"])
    listed = {m.source_account_id: m for m in codat.account_mapping.get(request=ids)}
    assert [o.name for o in listed["gbp-1"].target_account_options] == [
        "Business Current Account",
        "Business Savings",
    ]
    assert [o.name for o in listed["card"].target_account_options] == ["Business Credit Card"]
    target = listed["gbp-1"].target_account_options[0].id

    wrong = listed["card"].target_account_options[0].id
    with pytest.raises(errors.ErrorMessage) as refused:
        codat.account_mapping.create(
            request={
                **ids,
                "bank_feed_account_mapping": {"source_account_id": "gbp-1", "target_account_id": wrong},
            }
        )
    assert refused.value.data.validation.errors[0].item_id == "targetAccountId"

    answer = codat.account_mapping.create(
        request={
            **ids,
            "bank_feed_account_mapping": {"source_account_id": "gbp-1", "target_account_id": target},
        }
    )
    assert (answer.source_account_id, answer.target_account_id, answer.status) == (
        "gbp-1",
        target,
        "connecting",
    )
    for _ in range(100):  # the platform confirms the mapping on the sandbox's event loop
        mapped = {m.source_account_id: m for m in codat.account_mapping.get(request=ids)}["gbp-1"]
        if mapped.status == "connected":
            break
        time.sleep(0.01)
    assert (mapped.status, mapped.target_account_name) == ("connected", "Business Current Account")
    assert [(a.id, a.status.value) for a in codat.source_accounts.list(request=ids)] == [
        ("gbp-1", "connected"),
        ("card", "pending"),
    ]

    info = codat.company_information.get(request=ids)
    assert (info.company_name, info.base_currency, info.multicurrency_enabled) == (
        "Dave's Bakery",
        "GBP",
        True,
    )


def test_company_information_is_refused_where_codat_does_not_offer_it(codat: CodatBankFeeds) -> None:
    connection = connect(codat, "fbrh")
    allow_access(connection["link_url"])
    ids = {"company_id": connection["company_id"], "connection_id": connection["connection_id"]}
    with pytest.raises(errors.ErrorMessage) as refused:
        codat.company_information.get(request=ids)
    assert refused.value.status_code == 400


def test_sage_otp_through_the_sdk(codat: CodatBankFeeds, served) -> None:
    connection = connect(codat, "olpr", source_account("gbp-1", "GBP"))
    ids = {"company_id": connection["company_id"], "connection_id": connection["connection_id"]}
    otp = codat.source_accounts.generate_otp(request=ids)
    assert otp.otp
    assert datetime.fromisoformat(str(otp.expiry).replace("Z", "+00:00")) > datetime.now(UTC)
    signed_in = httpx.post(
        served[1] + "/sage/sign-in", data={"connectionId": ids["connection_id"], "otp": otp.otp}
    )
    assert signed_in.status_code == 200

    xero = connect(codat, "gbol")
    with pytest.raises(errors.ErrorMessage) as refused:
        codat.source_accounts.generate_otp(
            request={"company_id": xero["company_id"], "connection_id": xero["connection_id"]}
        )
    assert refused.value.status_code == 400


def test_sage_authorization_put_through_codats_platform_sdk(codat: CodatBankFeeds, served) -> None:
    connection = connect(codat, "olpr", source_account("gbp-1", "GBP"))
    ids = {"company_id": connection["company_id"], "connection_id": connection["connection_id"]}
    app, url = served
    app.state.sandbox.set_settings(sageLoginUrl="https://fintech.example/sage-login")
    redirect = httpx.post(url + "/sage/web-login")
    authorization_id = parse_qs(urlsplit(redirect.headers["location"]).query)["authorizationId"][0]

    security = platform_shared.Security(auth_header=basic_auth())
    with CodatPlatform(
        security=security, server_url=url, retry_config=RetryConfig("none", None, False)
    ) as platform:
        authorized = platform.connections.update_authorization(
            request={**ids, "request_body": {"authorizationId": authorization_id}}
        )
        assert (authorized.id, authorized.integration_key, authorized.status.value) == (
            ids["connection_id"],
            "olpr",
            "PendingAuth",
        )
        with pytest.raises(platform_errors.ErrorMessage) as spent:
            platform.connections.update_authorization(
                request={**ids, "request_body": {"authorizationId": authorization_id}}
            )
        assert spent.value.data.validation.errors[0].item_id == "authorizationId"
