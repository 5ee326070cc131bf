"""One profile per bank-feed target Codat offers: how the SMB authorizes, who maps, and the push rules.

A seventh target is one more ``PlatformProfile`` in ``PROFILES``: the API, the pages and the push all read
what differs from here. Sources for each fact are in ``app/sandbox/README.md``.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

# Codat's transactionType enum (Codat-Bank-Feeds.json CreateBankTransactions.transactions[].transactionType).
TRANSACTION_TYPES = frozenset(
    "Unknown Credit Debit Int Div Fee SerChg Dep Atm Pos Xfer Check Payment Cash DirectDep DirectDebit "
    "RepeatPmt Other".split()
)


class Flow(StrEnum):
    """How the SMB authorizes and maps (Codat's three onboarding flows)."""

    # One-time credentials typed into the platform, mapping inside the platform (QuickBooks Online).
    platform_credentials = "platform_credentials"
    # Codat Link: OAuth consent at the platform, then Codat's hosted mapping page or the mapping API.
    link_and_map = "link_and_map"
    # Started inside Sage with the data connection id and an OTP, or Sage's redirect to the fintech's login.
    sage = "sage"


@dataclass(frozen=True)
class PushRules:
    """When a push of bank transactions completes, which dates the platform refuses."""

    # Oldest date accepted, in days before today; None: no such limit.
    max_age_days: int | None = None
    # Refuse a transaction older than the newest one already in the target account.
    not_older_than_newest: bool = True
    # FreeAgent takes a transfer's direction from its type, so Codat writes a positive Xfer as OTHER.
    positive_transfer_as_other: bool = False
    # The transactionType values the platform takes; None: Codat's whole enum.
    transaction_types: frozenset[str] | None = None

    def date_refusal(self, when: datetime, today: date, newest: datetime) -> str | None:
        """Why a transaction dated ``when`` is refused, or None; ``newest`` is the newest one before it."""
        if when.date() > today:
            return f"The transaction date {when.isoformat()} is in the future."
        if self.max_age_days is not None and when.date() < today - timedelta(days=self.max_age_days):
            return (
                f"The transaction date {when.isoformat()} is more than {self.max_age_days} days old: this "
                "platform takes transactions dated up to one year before today."
            )
        if when < newest:
            kind = (
                "must be in chronological order and not older than the newest one in the account"
                if self.not_older_than_newest
                else "must be in chronological order"
            )
            earlier = f"The transaction date {when.isoformat()} is earlier than {newest.isoformat()}"
            return f"{earlier}: transactions {kind}."
        return None

    def as_written(self, transaction: dict[str, Any]) -> dict[str, Any]:
        """The transaction as the platform records it."""
        if (
            self.positive_transfer_as_other
            and transaction.get("transactionType") == "Xfer"
            and transaction["amount"] > 0
        ):
            return {**transaction, "transactionType": "Other"}
        return transaction


@dataclass(frozen=True)
class PlatformProfile:
    key: str
    name: str
    # Fixed ids, as a real Codat client sees them (the sandbox's own values).
    integration_id: str
    source_id: str
    flow: Flow
    push: PushRules
    # GET …/bankFeeds/info (Codat: NetSuite and Xero only).
    company_information: bool = False
    # The books the SMB's organisation starts with once it authorizes (mapping platforms).
    base_currency: str = "GBP"

    @property
    def maps_via_codat(self) -> bool:
        """Codat's mapping API and hosted mapping page apply (not QuickBooks Online, not Sage)."""
        return self.flow is Flow.link_and_map


QBO = PlatformProfile(
    key="hcws",
    name="QuickBooks Online Bank Feeds",
    integration_id="6b113e06-e818-45d7-977b-8e6bb3d01269",
    source_id="56e6575a-3f1f-4918-b009-f7535555f0d6",
    flow=Flow.platform_credentials,
    push=PushRules(transaction_types=frozenset({"Credit", "Debit", "Unknown"})),
    base_currency="USD",
)
XERO = PlatformProfile(
    key="gbol",
    name="Xero",
    integration_id="8a156a5a-39cb-4f9d-856e-76ef9b9a9607",
    source_id="b2ae52fd-3b5e-4b8f-9a7f-2b3c3e0c6a61",
    flow=Flow.link_and_map,
    push=PushRules(max_age_days=365, not_older_than_newest=False),
    company_information=True,
)
NETSUITE = PlatformProfile(
    key="akxx",
    name="Oracle NetSuite",
    integration_id="f6b0ab3a-1f1b-4a4b-9a7e-4a8b0f3d5c21",
    source_id="0d4e3c1b-7a5f-4c8e-9b2d-6f1a3e5c7b90",
    flow=Flow.link_and_map,
    push=PushRules(),
    company_information=True,
    base_currency="USD",
)
FREEAGENT = PlatformProfile(
    key="fbrh",
    name="FreeAgent",
    integration_id="3c9d2e1f-5b7a-4d6c-8e0f-1a2b3c4d5e6f",
    source_id="7e8f9a0b-1c2d-4e3f-8a5b-6c7d8e9f0a1b",
    flow=Flow.link_and_map,
    push=PushRules(positive_transfer_as_other=True),
)
EXACT = PlatformProfile(
    key="qudb",
    name="Exact (Netherlands)",
    integration_id="9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
    source_id="1a2b3c4d-5e6f-4a8b-9c0d-e1f2a3b4c5d6",
    flow=Flow.link_and_map,
    push=PushRules(),
    base_currency="EUR",
)
SAGE = PlatformProfile(
    key="olpr",
    name="Sage Bank Feeds",
    integration_id="5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
    source_id="c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
    flow=Flow.sage,
    push=PushRules(),
)

PROFILES: dict[str, PlatformProfile] = {p.key: p for p in (QBO, XERO, NETSUITE, FREEAGENT, EXACT, SAGE)}


def profile(key: str) -> PlatformProfile:
    """The profile of a connection's platform key (only keys in ``PROFILES`` are ever stored)."""
    return PROFILES[key]
