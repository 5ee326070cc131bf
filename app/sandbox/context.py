"""What every sandbox handler needs from the request: the state and the browser-facing root."""

from fastapi import Request

from app.sandbox.lifecycle import Lifecycle
from app.sandbox.state import SandboxState
from app.sandbox.views import Presenter


def sandbox_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def public_root(request: Request) -> str:
    """``public_url`` if configured, else this request's scheme, host and mount point (``root_path``)."""
    configured = sandbox_state(request).config.public_url
    if configured:
        return configured.rstrip("/")
    root = request.url.replace(path=request.scope.get("root_path", ""), query="", fragment="")
    return str(root).rstrip("/")


def lifecycle(request: Request) -> Lifecycle:
    return Lifecycle(sandbox_state(request), public_root(request))


def presenter(request: Request) -> Presenter:
    return Presenter(sandbox_state(request), public_root(request))
