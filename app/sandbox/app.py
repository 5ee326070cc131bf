"""The sandbox as an ASGI app of its own: Codat's API at the root, the hosted pages, and ``/_sandbox``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.sandbox import admin, admin_books, api
from app.sandbox.config import SandboxConfig
from app.sandbox.errors import install_error_handlers
from app.sandbox.pages import index, link, oauth, qbo, sage
from app.sandbox.redaction import redact_otps_in_access_log
from app.sandbox.state import SandboxState


def create_sandbox_app(
    config: SandboxConfig | None = None, *, webhook_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """``app.state.sandbox`` is the SandboxState; ``webhook_transport`` lets tests receive webhooks in-process
    (an ``httpx.ASGITransport`` or ``MockTransport``)."""
    state = SandboxState(config or SandboxConfig(), webhook_transport)
    redact_otps_in_access_log()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # Mounted under another app this never runs; deliveries then end with their event loop.
        state.webhooks.reset()

    app = FastAPI(
        title="Codat sandbox",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        routes=list(api.ROUTES),
        # As the BFF's (app/main.py): FastAPI's own telemetry looked up the global OpenTelemetry providers
        # on every request, about a twentieth of a call's CPU here.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.sandbox = state
    install_error_handlers(app)
    app.include_router(link.router)
    app.include_router(qbo.router)
    app.include_router(oauth.router)
    app.include_router(sage.router)
    app.include_router(admin.router)
    app.include_router(admin_books.router)
    app.include_router(index.router)
    state.operation_ids = api.OPERATION_IDS
    return app
