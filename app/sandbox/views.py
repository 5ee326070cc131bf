"""Codat's JSON shapes (Codat-Bank-Feeds.json and Codat-Platform.json) for what the sandbox stores."""

from typing import Any

from app.sandbox.clock import iso
from app.sandbox.models import Company, Connection, SourceAccount
from app.sandbox.platforms import PlatformProfile, profile
from app.sandbox.state import SandboxState

SANDBOX_CLIENT_ID = "0b7c2f1e-5d1a-4c39-9a53-5a9d1c0e7f21"


def link_path(connection: Connection) -> str:
    return f"/link/companies/{connection.company_id}/connections/{connection.id}"


class Presenter:
    """Renders stored objects as Codat does; ``root`` is the browser-facing root that links start with."""

    def __init__(self, state: SandboxState, root: str) -> None:
        self._state = state
        self._root = root

    def company(self, company: Company) -> dict[str, Any]:
        return {
            "id": company.id,
            "name": company.name,
            "description": company.description,
            "redirect": f"{self._root}/link/company/{company.id}",
            "lastSync": None,
            "created": iso(company.created),
            "createdByUserName": None,
            "products": [],
            "tags": company.tags,
            "referenceSubsidiaryCompanies": [],
            "dataConnections": [self.connection(c) for c in company.connections.values()],
        }

    def company_reference(self, company: Company) -> dict[str, Any]:
        return {
            "id": company.id,
            "name": company.name,
            "description": company.description,
            "links": {"portal": f"{self._root}/_sandbox/"},
            "tags": company.tags,
        }

    def connection(self, connection: Connection) -> dict[str, Any]:
        # As with Codat's Get/List connection, a linkUrl whose OTP has lapsed comes back with a fresh one.
        otp = self._state.current_otp(connection)
        platform = profile(connection.platform_key)
        return {
            "id": connection.id,
            "integrationId": platform.integration_id,
            "integrationKey": platform.key,
            "sourceId": platform.source_id,
            "sourceType": "BankFeed",
            "platformName": platform.name,
            "linkUrl": f"{self._root}{link_path(connection)}/start?otp={otp.code}",
            "status": connection.status.value,
            "lastSync": None,
            "created": iso(connection.created),
        }

    def integration(self, platform: PlatformProfile) -> dict[str, Any]:
        return {
            "key": platform.key,
            "logoUrl": f"{self._root}/link/logo.svg",
            "name": platform.name,
            "enabled": self._state.portal.enabled(platform.key),
            "sourceId": platform.source_id,
            "sourceType": "BankFeed",
            "integrationId": platform.integration_id,
            "isOfflineConnector": False,
            "isBeta": False,
            "dataProvidedBy": "Codat",
        }

    def sync_settings(self) -> dict[str, Any]:
        enabled = self._state.portal.data_types
        data_types = [
            name
            for name, on in (
                ("bankAccounts", enabled.bank_accounts),
                ("bankTransactions", enabled.bank_transactions),
            )
            if on
        ]
        settings = [
            {
                "dataType": name,
                "fetchOnFirstLink": True,
                "syncSchedule": 24,
                "syncOrder": order,
                "isLocked": False,
            }
            for order, name in enumerate(data_types)
        ]
        return {"clientId": SANDBOX_CLIENT_ID, "settings": settings, "overridesDefaults": True}


def source_account(account: SourceAccount) -> dict[str, Any]:
    """SourceAccountV2 (additionalProperties: false). routingInfo is not nullable: left out when unset."""
    body: dict[str, Any] = {
        "id": account.id,
        "accountName": account.account_name,
        "accountType": account.account_type,
        "accountNumber": account.account_number,
        "sortCode": account.sort_code,
        "currency": account.currency,
        "balance": account.balance,
        "accountInfo": account.account_info,
        "modifiedDate": account.modified_date,
        "status": account.status.value,
        "feedStartDate": account.feed_start_date.isoformat() if account.feed_start_date else None,
    }
    if account.routing_info is not None:
        body["routingInfo"] = account.routing_info
    return body


def source_account_v1(account: SourceAccount) -> dict[str, Any]:
    """SourceAccount (v1), what PATCH answers: no routingInfo/accountInfo, feedStartDate as a DateTime."""
    start = account.feed_start_date
    return {
        "id": account.id,
        "accountName": account.account_name,
        "accountType": account.account_type,
        "accountNumber": account.account_number,
        "sortCode": account.sort_code,
        "currency": account.currency,
        "balance": account.balance,
        "modifiedDate": account.modified_date,
        "status": account.status.value,
        "feedStartDate": f"{start.isoformat()}T00:00:00Z" if start else None,
    }


def page(results: list[dict[str, Any]], *, path: str, number: int, size: int, total: int) -> dict[str, Any]:
    """Codat's pagination envelope; hrefs are relative to the API root, as in Codat's examples."""

    def href(n: int) -> dict[str, str]:
        return {"href": f"{path}?page={n}&pageSize={size}"}

    links = {"self": {"href": path}, "current": href(number)}
    if number * size < total:
        links["next"] = href(number + 1)
    if number > 1:
        links["previous"] = href(number - 1)
    return {
        "results": results,
        "pageNumber": number,
        "pageSize": size,
        "totalResults": total,
        "_links": links,
    }
