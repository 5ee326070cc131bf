"""The seed's flow through Codat's official SDK (codat-bankfeeds) against a served sandbox.

The SDK validates every response against Codat's models and raises on any mismatch, so these tests prove
the shapes as a real client sees them (the contract checker proves them against the OpenAPI files).
"""

import re
from collections.abc import Iterator

import pytest
from codat_bankfeeds import CodatBankFeeds
from codat_bankfeeds.models import errors, shared
from codat_bankfeeds.utils import RetryConfig

from app.sandbox import SandboxConfig
from tests.contract import ContractChecked
from tests.sandbox.support import basic_auth, serve_in_thread

HOUR = 3600


@pytest.fixture
def served(make_sandbox_app) -> Iterator[tuple[ContractChecked, str]]:
    app = make_sandbox_app(SandboxConfig(seed=11))
    with serve_in_thread(app) as url:
        yield app, url


@pytest.fixture
def codat(served) -> Iterator[CodatBankFeeds]:
    _, url = served
    security = shared.Security(auth_header=basic_auth())
    with CodatBankFeeds(
        security=security, server_url=url, retry_config=RetryConfig("none", None, False)
    ) as sdk:
        yield sdk


def v2_account(account_id: str, account_type: str = "checking", currency: str = "USD") -> dict:
    return {
        "id": account_id,
        "account_name": f"Account {account_id}",
        "account_type": account_type,
        "account_number": "12345670",
        "sort_code": "12-34-56",
        "currency": currency,
        "balance": 4002,
    }


def test_the_seed_flow_runs_through_the_official_sdk(codat: CodatBankFeeds, served) -> None:
    app, _ = served
    company = codat.companies.create(request={"name": "Bank of Dave"})
    connection = codat.connections.create(
        request={"company_id": company.id, "request_body": {"platform_key": "hcws"}}
    )
    assert (connection.status.value, connection.source_type.value) == ("PendingAuth", "BankFeed")
    assert (connection.platform_name, connection.integration_key) == ("QuickBooks Online Bank Feeds", "hcws")
    assert re.search(r"/start\?otp=\d{6}$", connection.link_url)
    ids = {"company_id": company.id, "connection_id": connection.id}

    single = codat.source_accounts.create(request={**ids, "request_body": v2_account("ac-001")})
    assert (single.id, single.status.value, single.feed_start_date) == ("ac-001", "pending", None)
    batch = codat.source_accounts.create_batch(
        request={
            **ids,
            "request_body": [v2_account("ac-002", "savings"), v2_account("ac-003", "creditCard", "CAD")],
        }
    )
    assert [(item.source_account_id, item.result.status_code) for item in batch] == [
        ("ac-002", 201),
        ("ac-003", 201),
    ]

    renamed = codat.source_accounts.update(
        request={**ids, "account_id": "ac-002", "source_account": {"id": "ac-002", "account_name": "Savings"}}
    )
    assert renamed.account_name == "Savings"
    listed = codat.source_accounts.list(request=ids)
    assert [(a.id, a.account_name, a.status.value) for a in listed] == [
        ("ac-001", "Account ac-001", "pending"),
        ("ac-002", "Savings", "pending"),
        ("ac-003", "Account ac-003", "pending"),
    ]
    assert app.state.sandbox.counters["create-source-account"] == 1


def test_credentials_are_new_on_each_call_and_revoked_together(codat: CodatBankFeeds, served) -> None:
    state = served[0].state.sandbox
    company = codat.companies.create(request={"name": "Bank of Dave"})
    connection = codat.connections.create(
        request={"company_id": company.id, "request_body": {"platform_key": "hcws"}}
    )
    ids = {"company_id": company.id, "connection_id": connection.id}

    first = codat.source_accounts.generate_credentials(request={**ids, "request_body": b"{}"})
    second = codat.source_accounts.generate_credentials(request={**ids, "request_body": b"{}"})
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", first.username)
    assert first != second
    for credentials in (first, second):
        assert (
            state.connection_for_credentials(credentials.username, credentials.password).id == connection.id
        )

    codat.source_accounts.delete_credentials(request=ids)
    assert state.connection_for_credentials(first.username, first.password) is None
    assert state.connection_for_credentials(second.username, second.password) is None


def test_a_fresh_link_once_the_otp_lifetime_has_passed(codat: CodatBankFeeds, served) -> None:
    state = served[0].state.sandbox
    company = codat.companies.create(request={"name": "Bank of Dave"})
    created = codat.connections.create(
        request={"company_id": company.id, "request_body": {"platform_key": "hcws"}}
    )
    ids = {"company_id": company.id, "connection_id": created.id}

    state.clock.advance(HOUR - 60)
    assert codat.connections.list(request={"company_id": company.id}).results[0].link_url == created.link_url
    state.clock.advance(61)
    fresh = codat.connections.get(request=ids).link_url
    assert fresh != created.link_url
    listed = codat.connections.list(request={"company_id": company.id})
    assert [c.link_url for c in listed.results] == [fresh]
    assert codat.companies.get(request={"company_id": company.id}).data_connections[0].link_url == fresh


def test_errors_reach_the_sdk_as_codat_error_messages(codat: CodatBankFeeds) -> None:
    with pytest.raises(errors.ErrorMessage) as raised:
        codat.companies.get(request={"company_id": "9f1c1b43-60f1-4c56-a3f2-7e8f0d5a2b11"})
    assert raised.value.status_code == 404
    assert raised.value.data.correlation_id
    assert raised.value.data.can_be_retried == "Unknown"
