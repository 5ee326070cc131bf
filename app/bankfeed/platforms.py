"""The accounting platforms a bank feed can reach through Codat, and what differs between them.

Each is one `Platform`: its name on our API, Codat's platform key, the name users know, its onboarding `Flow`
and its transaction rules. The core reads the flow to suggest the user's next step (app/bankfeed/view.py);
onboarding has one strategy per flow (app/onboarding/flows.py); transactions read the rules. A seventh target
is one entry here (plus a strategy if its flow is new) and a sandbox profile (app/sandbox/platforms.py).

Sources (docs.codat.io): integrations/bank-feeds/overview, bank-feeds/mapping/overview, each platform's pages
under integrations/bank-feeds/, and the update 260402-deprecation-otp-for-sage-bank-feeds.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Flow(StrEnum):
    """How the SMB authorizes the connection and who maps each source account to an account in the books."""

    QUICKBOOKS = "quickbooks"  # one-time credentials typed into QuickBooks; mapped inside QuickBooks
    LINK_AND_MAP = "link_and_map"  # OAuth through Codat's Link, then mapped through Codat (hosted or API)
    SAGE = "sage"  # the connection id and a one-time code typed into Sage (or Sage's login redirect)


PlatformName = Literal["quickbooks-online", "xero", "sage", "netsuite", "freeagent", "exact"]


@dataclass(frozen=True, slots=True)
class Platform:
    name: PlatformName
    key: str  # Codat's platformKey
    label: str
    flow: Flow
    # How many days back a transaction may be dated, from the business's today; None: no limit but the others
    # (QuickBooks has its own window, from the feed start date: app/transactions/holds.py).
    history_days: int | None = None
    company_information: bool = False  # GET …/bankFeeds/info answers (Xero and NetSuite only)

    @property
    def maps_through_codat(self) -> bool:
        return self.flow is Flow.LINK_AND_MAP


PLATFORMS: tuple[Platform, ...] = (
    Platform("quickbooks-online", "hcws", "QuickBooks Online", Flow.QUICKBOOKS),
    Platform("xero", "gbol", "Xero", Flow.LINK_AND_MAP, history_days=365, company_information=True),
    Platform("sage", "olpr", "Sage", Flow.SAGE),
    Platform("netsuite", "akxx", "Oracle NetSuite", Flow.LINK_AND_MAP, company_information=True),
    Platform("freeagent", "fbrh", "FreeAgent", Flow.LINK_AND_MAP),
    Platform("exact", "qudb", "Exact Online", Flow.LINK_AND_MAP),
)
BY_NAME = {p.name: p for p in PLATFORMS}
BY_KEY = {p.key: p for p in PLATFORMS}
DEFAULT = BY_NAME["quickbooks-online"]  # where the service started; what a connect naming no platform gets


def by_key(key: str | None) -> Platform:
    """The platform of a stored connection (connections made before targets were added are QuickBooks's)."""
    return BY_KEY.get(key or DEFAULT.key, DEFAULT)
