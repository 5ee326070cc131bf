"""The embedded Codat sandbox: Codat's API, its hosted QBO Bank Feeds Link page, a QuickBooks stand-in,
the other bank-feed targets (Xero, NetSuite, FreeAgent, Exact, Sage: see README.md), the Portal's switches
and test knobs, all in memory.

``create_sandbox_app(SandboxConfig(...))`` returns the ASGI app; its state is ``app.state.sandbox``.
Served alone, Codat's paths are at the root (``https://api.codat.io/companies`` is ``{root}/companies``);
mounted (``bankfeeds-bff dev`` puts it at ``/sandbox``), links follow the mount point. ``{root}`` below is
``SandboxConfig.public_url`` when set, else the requesting URL's scheme, host and mount point.

- Codat API: ``{root}/companies…``, ``{root}/integrations/{platformKey}``, ``{root}/profile/syncSettings``.
- linkUrl: ``{root}/link/companies/{companyId}/connections/{connectionId}/start?otp=NNNNNN`` (``&lang=fr``).
- QuickBooks stand-in: ``{root}/qbo/``; Sage's Connect Bank stand-in: ``{root}/sage/``.
- Mapping platforms: the linkUrl shows the platform's consent, then Codat's mapping page (``…/mapping``).
- Portal switches and knobs: ``{root}/_sandbox/`` (see ``app.sandbox.admin``).
"""

from app.sandbox.app import create_sandbox_app
from app.sandbox.config import SandboxConfig

__all__ = ["SandboxConfig", "create_sandbox_app"]
