"""The embedded Codat sandbox: Codat's API, its hosted QBO Bank Feeds Link page, a QuickBooks stand-in,
the Portal's switches and test knobs, all in memory.

``create_sandbox_app(SandboxConfig(...))`` returns the ASGI app; its state is ``app.state.sandbox``.
"""

from app.sandbox.app import create_sandbox_app
from app.sandbox.config import SandboxConfig

__all__ = ["SandboxConfig", "create_sandbox_app"]
