"""One onboarding strategy per `Flow` (app/bankfeed/platforms.py), behind one interface.

Connect's common steps (a Codat company, a connection with the platform's key, the source accounts) are the
same for every platform; what the SMB is handed next differs: a Link URL (QuickBooks Online and the platforms
mapped through Codat) or a one-time code to type into Sage (Codat: the link must not be sent for Sage). Each
strategy also says which of the platform-specific operations apply. A new flow is one more strategy here.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import SecretStr

from app.bankfeed.models import FeedConnection
from app.bankfeed.platforms import Flow, Platform
from app.bankfeed.schemas import BankFeedOut


class Operation(StrEnum):
    LINK = "link"  # GET /link and /link/redirect
    CREDENTIALS = "credentials"  # one-time QuickBooks credentials
    MAPPING = "mapping"  # GET /mapping, POST /accounts/{id}/mapping
    SAGE = "sage"  # POST /sage-code, POST /sage/authorization


# Why an operation does not apply, and what the platform uses instead ({platform}: the name users know).
REFUSALS = {
    Operation.LINK: "{platform} does not use a link: get a code with POST /v1/bank-feed/sage-code.",
    Operation.CREDENTIALS: "One-time credentials are for QuickBooks Online only; {platform} signs in through "
    "its own page (see the view's actionEndpoint).",
    Operation.MAPPING: "{platform} maps accounts inside {platform}: there is nothing to map here.",
    Operation.SAGE: "Only Sage uses a one-time code or Sage's sign-in; {platform} uses a link: "
    "GET /v1/bank-feed/link.",
}


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    expires_at: datetime
    connection: FeedConnection


@dataclass(frozen=True, slots=True)
class SageCode:
    connection_id: str
    code: SecretStr  # never logged, never stored
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Handover:
    """What connect gives the SMB to take the next step at the platform, and the view it left."""

    platform: Platform
    connection: FeedConnection
    link: Link | None = None
    sage_code: SageCode | None = None
    view: BankFeedOut | None = None  # set by the service once the flow has handed over


class Steps(Protocol):
    """The onboarding service's steps a strategy may take."""

    async def fresh_link(self, company_id: str, connection: FeedConnection) -> Link: ...

    async def new_sage_code(self, company_id: str, connection: FeedConnection) -> SageCode: ...


class OnboardingFlow(Protocol):
    @property
    def operations(self) -> frozenset[Operation]: ...

    async def handover(
        self, steps: Steps, platform: Platform, company_id: str, connection: FeedConnection
    ) -> Handover: ...


@dataclass(frozen=True, slots=True)
class LinkFlow:
    """The SMB opens Codat's Link URL: QuickBooks Online (credentials typed into QuickBooks, mapped there)
    and the platforms Codat maps (OAuth consent, then mapping through Codat)."""

    operations: frozenset[Operation]

    async def handover(
        self, steps: Steps, platform: Platform, company_id: str, connection: FeedConnection
    ) -> Handover:
        return Handover(platform, connection, link=await steps.fresh_link(company_id, connection))


@dataclass(frozen=True, slots=True)
class SageFlow:
    """The SMB types the connection id and a one-time code into Sage (or Sage redirects to our login)."""

    operations: frozenset[Operation] = frozenset({Operation.SAGE})

    async def handover(
        self, steps: Steps, platform: Platform, company_id: str, connection: FeedConnection
    ) -> Handover:
        return Handover(platform, connection, sage_code=await steps.new_sage_code(company_id, connection))


FLOWS: dict[Flow, OnboardingFlow] = {
    Flow.QUICKBOOKS: LinkFlow(frozenset({Operation.LINK, Operation.CREDENTIALS})),
    Flow.LINK_AND_MAP: LinkFlow(frozenset({Operation.LINK, Operation.MAPPING})),
    Flow.SAGE: SageFlow(),
}


def strategy(platform: Platform) -> OnboardingFlow:
    return FLOWS[platform.flow]


def refusal(platform: Platform, operation: Operation) -> str | None:
    """Why `operation` does not apply to the platform, or None when it does."""
    if operation in strategy(platform).operations:
        return None
    return REFUSALS[operation].format(platform=platform.label)
