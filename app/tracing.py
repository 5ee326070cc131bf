"""OpenTelemetry traces: off unless `tracing.otlp_endpoint` is set (or a test hands in a provider).

One trace per request: FastAPI's server span is the root, the Codat calls (httpx) and the SQL
(SQLAlchemy) are its children. The request's correlation id is the root span's `bff.request_id`
attribute (set by RequestContextMiddleware), so a log line leads to its trace.
"""

from collections.abc import Callable

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import TracingSettings

# Probes and scrapes every few seconds would drown the traces that matter.
EXCLUDED_URLS = "livez,healthz,readyz,metrics"


def otlp_provider(settings: TracingSettings) -> TracerProvider | None:
    """A provider exporting to the OTLP endpoint in batches, or None when tracing is off."""
    if settings.otlp_endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    return provider


def instrument_app(app: FastAPI, provider: TracerProvider) -> None:
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS)


def instrument_resources(
    provider: TracerProvider, engine: AsyncEngine, codat_http: httpx.AsyncClient
) -> Callable[[], None]:
    """Trace the SQL and the Codat calls; returns what undoes it. SQLAlchemy's instrumentor is one per
    process (a second `instrument` does nothing), so the app that set it up takes it down when it stops."""
    # Its declared range stops below SQLAlchemy 2.1, whose engine events it uses are unchanged (tested).
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=provider, skip_dep_check=True
    )
    HTTPXClientInstrumentor.instrument_client(codat_http, tracer_provider=provider)
    return SQLAlchemyInstrumentor().uninstrument  # type: ignore[no-any-return]
