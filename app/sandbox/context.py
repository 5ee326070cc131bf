"""What every sandbox handler needs from the request: the state and the browser-facing root."""

from typing import Any

from fastapi import Request

from app.sandbox.lifecycle import Lifecycle
from app.sandbox.state import SandboxState
from app.sandbox.views import Presenter


def sandbox_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


# Roots by what they are made of (scheme, Host header, server, root_path): building the request's URL was
# ~20 µs of a push's CPU. Host headers come from clients, so it is kept small.
_roots: dict[tuple[Any, ...], str] = {}
_MAX_ROOTS = 64


def public_root(request: Request) -> str:
    """``public_url`` if configured, else this request's scheme, host and mount point (``root_path``)."""
    configured = sandbox_state(request).config.public_url
    if configured:
        return configured.rstrip("/")
    scope = request.scope
    root_path = scope.get("root_path", "")
    key = (scope.get("scheme"), request.headers.get("host"), scope.get("server"), root_path)
    root = _roots.get(key)
    if root is None:
        if len(_roots) >= _MAX_ROOTS:
            _roots.clear()
        root = _roots[key] = str(request.url.replace(path=root_path, query="", fragment="")).rstrip("/")
    return root


def lifecycle(request: Request) -> Lifecycle:
    return Lifecycle(sandbox_state(request), public_root(request))


def presenter(request: Request) -> Presenter:
    return Presenter(sandbox_state(request), public_root(request))
