"""Tracing: a connect is one trace, its server span the root, its Codat calls and SQL its descendants."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.main import create_app
from tests.conftest import _empty_tables
from tests.contract import contract_checked
from tests.factories import register


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced_client(settings, sandbox_app, exporter) -> AsyncIterator[httpx.AsyncClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app: FastAPI = create_app(settings, sandbox_app=contract_checked(sandbox_app), tracer_provider=provider)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield client
    await _empty_tables(settings.database.url)


def url_of(span: ReadableSpan) -> str:
    return str(span.attributes.get("url.full") or span.attributes.get("http.url") or "")


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


async def test_a_connect_is_one_trace_with_its_codat_calls_and_sql_under_one_root(
    traced_client, exporter, service_headers, user_headers
):
    await register(traced_client, service_headers(), "biz-1")
    exporter.clear()

    response = await traced_client.post(
        "/v1/bank-feed/connect", headers={**user_headers("biz-1"), "X-Request-ID": "connect-trace-1"}
    )

    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    # Work the request leaves to background tasks (the audit sink's batched INSERT) is traced on its own.
    (root,) = [span for span in spans if span.parent is None and span.kind is SpanKind.SERVER]
    assert root.name == "POST /v1/bank-feed/connect"
    assert root.attributes["bff.request_id"] == "connect-trace-1"
    traced = [span for span in spans if span.context.trace_id == root.context.trace_id]
    by_id = {span.context.span_id: span for span in traced}
    codat_calls = [s for s in spans if s.kind is SpanKind.CLIENT and "codat-sandbox" in url_of(s)]
    sql = [s for s in traced if s.kind is SpanKind.CLIENT and "db.system" in s.attributes]
    assert len(codat_calls) >= 3  # company, connection, source accounts
    assert len(sql) >= 3
    assert all(span in traced for span in codat_calls)  # every Codat call the request made, in its trace
    for span in codat_calls + sql:
        assert ancestors(span, by_id)[-1] is root
