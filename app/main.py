"""The application factory. The lifespan owns the engine, the sessionmaker and the one Codat HTTP client."""

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.sdk.trace import TracerProvider

from app import ops, tracing
from app.audit.sink import AuditSink, running
from app.auth.tokens import TokenVerifier
from app.bankfeed.cache import ViewCache
from app.bankfeed.changes import ChangeFeed
from app.clock import Clock, SystemClock
from app.codat.client import CodatClient, build_http_client
from app.config import Environment, Settings, get_settings
from app.console.pages import router as console_pages
from app.console.router import router as console_router
from app.db import create_engine, create_sessionmaker
from app.docs import mount_docs
from app.errors import install_error_handlers
from app.events.router import router as events_router
from app.events.worker import in_process as events_worker
from app.housekeeping import housekeeping
from app.http_guards import BodySizeLimit, OpsToken, SecurityHeaders
from app.metrics import INBOUND_RATE_LIMITED
from app.observability import RequestContextMiddleware, configure_logging
from app.onboarding.dependencies import onboarding_service
from app.onboarding.fastpath import answer_from_cache
from app.onboarding.link_cache import LinkCache
from app.onboarding.router import internal_router
from app.onboarding.router import router as onboarding_router
from app.onboarding.singleflight import SingleFlight
from app.openapi_statuses import install as declare_common_statuses
from app.ops import CodatHealth
from app.ratelimit import Limiter
from app.shutdown import on_shutdown_signal
from app.transactions.router import router as transactions_router
from app.transactions.worker import in_process as transactions_worker
from app.web import mount_demo
from app.webhooks.reconcile import reconcile_forever
from app.webhooks.router import operator_router as webhooks_operator_router
from app.webhooks.router import router as webhooks_router
from app.webhooks.router import webhook_processor


def create_app(
    settings: Settings | None = None,
    *,
    sandbox_app: FastAPI | None = None,
    tracer_provider: TracerProvider | None = None,
    served: bool = False,
) -> FastAPI:
    """Build the BFF. With the sandbox enabled, it is mounted at /sandbox and called in-process as Codat.
    Traced with `tracer_provider`, or to `tracing.otlp_endpoint` when set. `served`: this process serves
    only this app (uvicorn's worker), so what its start made may be kept out of garbage collection."""
    settings = settings or get_settings()
    tracer_provider = tracer_provider or tracing.otlp_provider(settings.tracing)
    if settings.sandbox.enabled and sandbox_app is None:
        sandbox_app = build_sandbox(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if sandbox_app is not None:
                await stack.enter_async_context(sandbox_app.router.lifespan_context(sandbox_app))
            await _open_resources(app, settings, sandbox_app, stack, tracer_provider)
            _start_reconciler(app, settings, stack)
            stack.enter_context(on_shutdown_signal(app.state.changes.close))
            if settings.environment is Environment.dev:
                await stack.enter_async_context(transactions_worker(app))
                state = app.state
                await stack.enter_async_context(housekeeping(state.sessionmaker, settings, state.clock))
                await stack.enter_async_context(events_worker(app))
            await ViewCache.of(app.state.sessionmaker.kw["bind"]).started()
            if served:
                _freeze_what_start_made()
            yield

    app = FastAPI(
        title="bankfeeds-bff",
        version="1.0.0",
        summary="Connect small businesses' bank accounts to QuickBooks Online through Codat.",
        lifespan=lifespan,
        # Traces are app/tracing.py's (to `tracing.otlp_endpoint`). FastAPI's own telemetry would look up the
        # global OpenTelemetry providers on every request (a twentieth of a cached read's CPU) and, were one
        # set, trace each request a second time.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # mount_docs serves it without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    declare_common_statuses(app)
    app.include_router(onboarding_router)
    app.include_router(internal_router)
    app.include_router(transactions_router)
    app.include_router(webhooks_router)
    app.include_router(webhooks_operator_router)
    app.include_router(events_router)
    app.include_router(console_router)
    app.include_router(console_pages)
    app.include_router(ops.router)
    if settings.docs_enabled:
        mount_docs(app)
    if sandbox_app is not None:
        app.mount("/sandbox", sandbox_app)
        mount_demo(app, settings.auth)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-None-Match",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "Retry-After", "X-Request-ID"],
        )
    if settings.http.ops_token is not None:
        app.add_middleware(OpsToken, token=settings.http.ops_token.get_secret_value())
    app.add_middleware(BodySizeLimit, max_bytes=settings.http.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, fast_answer=answer_from_cache)
    if tracer_provider is not None:
        tracing.instrument_app(app, tracer_provider)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the request-context's own 500s included
    return app


def create_served_app() -> FastAPI:
    """The factory `serve` gives uvicorn: each worker process configures its logging, then builds the app."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings, served=True)


def _freeze_what_start_made() -> None:
    """Keep what the start made (modules, the app, the views and links taken in) out of every later garbage
    collection: those objects live as long as the process, yet each full collection walked them all, about
    120 ms here with the loop stopped, which every request in flight waited out (the reads' p99). What they
    free by reference counting is still freed; only cycles among them are never collected, which is why
    this is done in a served worker only (a test process builds and drops many apps)."""
    gc.collect()
    gc.freeze()


def build_sandbox(settings: Settings) -> FastAPI:
    from app.sandbox import SandboxConfig, create_sandbox_app  # a development tool: imported only when used

    return create_sandbox_app(
        SandboxConfig(
            api_keys=[settings.sandbox.api_key.get_secret_value()],
            public_url=settings.sandbox.public_url,
            webhook_url=settings.sandbox.webhook_url,
            redirect_url=settings.sandbox.redirect_url,
            otp_lifetime_seconds=settings.codat.otp_lifetime_seconds,
            webhook_secret=settings.webhooks.signing_secret.get_secret_value()
            if settings.webhooks.signing_secret
            else None,
        )
    )


async def _open_resources(
    app: FastAPI,
    settings: Settings,
    sandbox_app: FastAPI | None,
    stack: AsyncExitStack,
    tracer_provider: TracerProvider | None,
) -> None:
    engine = create_engine(settings)
    stack.push_async_callback(engine.dispose)
    codat_http = await stack.enter_async_context(_codat_http_client(settings, sandbox_app))
    codat_http.event_hooks["response"].append(_count_rate_limited)
    if tracer_provider is not None:
        stack.callback(tracing.instrument_resources(tracer_provider, engine, codat_http))
    state = app.state
    state.sessionmaker = create_sessionmaker(engine)
    state.clock = _clock(sandbox_app)
    ViewCache.of(engine, settings.view_cache_entries)  # made here to size it; found again by its engine
    LinkCache.of(engine)  # before the view cache starts listening, to take in the live links with the views
    audit = await stack.enter_async_context(running(AuditSink(state.sessionmaker, state.clock)))
    state.codat = CodatClient(
        codat_http, settings.codat, wall_clock=state.clock.now, on_call=audit.codat_call
    )
    state.token_verifier = TokenVerifier(settings.auth)
    state.single_flight = SingleFlight()
    state.changes = ChangeFeed()
    state.limiter = Limiter(settings.limits)
    state.codat_health = CodatHealth(
        state.codat, settings.codat.platform_key, settings.ops.codat_check_interval_seconds, state.clock
    )
    stack.push_async_callback(state.codat_health.wait)


async def _count_rate_limited(response: httpx.Response) -> None:
    if response.status_code == 429:
        INBOUND_RATE_LIMITED.inc()


def _start_reconciler(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    interval = settings.webhooks.reconcile_interval_seconds
    if interval == 0:
        return
    sync = onboarding_service(app).sync
    task = asyncio.create_task(reconcile_forever(sync, webhook_processor(app.state), interval))
    stack.callback(task.cancel)


def _codat_http_client(settings: Settings, sandbox_app: FastAPI | None) -> httpx.AsyncClient:
    if sandbox_app is None:
        return build_http_client(settings.codat)
    # The embedded sandbox answers in-process; its API key stands in for Codat's.
    codat_settings = settings.codat.model_copy(
        update={"base_url": "http://codat-sandbox", "api_key": settings.sandbox.api_key}
    )
    return build_http_client(codat_settings, transport=httpx.ASGITransport(app=sandbox_app))


def _clock(sandbox_app: FastAPI | None) -> Clock:
    # With the sandbox as Codat, share its clock: moving it forward lapses our stored links too.
    return sandbox_app.state.sandbox.clock if sandbox_app is not None else SystemClock()
