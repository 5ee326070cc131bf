"""`GET /v1/bank-feed` answered from the view cache before routing (app/onboarding/fastpath.py) answers
exactly what the route would, and leaves to the route every request it is not sure of."""

import jwt
import pytest
from prometheus_client import REGISTRY

import app.onboarding.router as router_module
from app.auth.tokens import mint_end_user_token
from app.bankfeed.cache import ViewCache
from app.observability import RequestContextMiddleware


@pytest.fixture
def routed(monkeypatch):  # type: ignore[no-untyped-def]
    """How many reads the route answered (the others were answered from the cache before routing)."""
    calls: list[str] = []
    view = router_module.served_bank_feed_view

    async def counted(session, business_id):  # type: ignore[no-untyped-def]
        calls.append(business_id)
        return await view(session, business_id)

    monkeypatch.setattr(router_module, "served_bank_feed_view", counted)
    return calls


def request_context(app) -> RequestContextMiddleware:  # type: ignore[no-untyped-def]
    """The app's request-context middleware, which main gives the fast path (its stack built if need be)."""
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer, RequestContextMiddleware):
        layer = layer.app
    return layer


@pytest.fixture
def answered(app, monkeypatch):  # type: ignore[no-untyped-def]
    """What the fast path said for each request: True when it answered it."""
    outcomes: list[bool] = []
    middleware = request_context(app)
    answer = middleware.fast_answer
    assert answer is not None

    async def spied(scope, receive, send) -> bool:  # type: ignore[no-untyped-def]
        outcomes.append(await answer(scope, receive, send))
        return outcomes[-1]

    monkeypatch.setattr(middleware, "fast_answer", spied)
    return outcomes


async def without_fast_path(app, monkeypatch, read):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as patch:
        patch.setattr(request_context(app), "fast_answer", None)
        return await read()


def comparable(response) -> tuple:  # type: ignore[no-untyped-def]
    return response.status_code, sorted(response.headers.multi_items()), response.content


def requests_count(status: str) -> float:
    labels = {"method": "GET", "route": "/v1/bank-feed", "status": status}
    return REGISTRY.get_sample_value("bff_http_requests_total", labels) or 0.0


async def test_a_read_of_a_cached_view_skips_routing_and_is_counted_under_the_route(
    client, user_headers, business, routed
):
    headers = user_headers(business)
    first = await client.get("/v1/bank-feed", headers=headers)
    counted = requests_count("200")

    second = await client.get("/v1/bank-feed", headers=headers)

    assert second.content == first.content
    assert routed == [business]
    assert requests_count("200") == counted + 1
    assert len(second.headers["x-request-id"]) == 32


async def test_answers_exactly_what_the_route_answers(
    app, client, auth_settings, user_headers, business, monkeypatch, answered
):
    token = user_headers(business)["Authorization"].removeprefix("Bearer ")
    etag = (await client.get("/v1/bank-feed", headers={"Authorization": f"Bearer {token}"})).headers["etag"]
    expired = jwt.encode(
        {"sub": "u", "aud": auth_settings.audience, "business_id": business, "exp": 1},
        auth_settings.jwt_secret.get_secret_value(),
    )
    ghost = mint_end_user_token(auth_settings, "ghost")
    answered_before_routing = {  # each case, and whether the fast path answers it
        "plain": ("", {"Authorization": f"Bearer {token}"}, True),
        "query string": ("?_=1", {"Authorization": f"Bearer {token}"}, True),
        "lower-case scheme": ("", {"Authorization": f"bearer {token}"}, True),
        "two spaces": ("", {"Authorization": f"Bearer  {token} "}, True),
        "ETag matches": ("", {"Authorization": f"Bearer {token}", "If-None-Match": etag}, True),
        "ETag in a list": ("", {"Authorization": f"Bearer {token}", "If-None-Match": f'W/"x", {etag}'}, True),
        "another ETag": ("", {"Authorization": f"Bearer {token}", "If-None-Match": '"other"'}, True),
        "expired": ("", {"Authorization": f"Bearer {expired}"}, False),
        "no token": ("", {}, False),
        "basic": ("", {"Authorization": "Basic dXNlcjpwYXNz"}, False),
        "unknown business": ("", {"Authorization": f"Bearer {ghost}"}, False),
    }
    for name, (query, headers, fast) in answered_before_routing.items():
        headers = {**headers, "X-Request-ID": "same-correlation-id"}  # it is in the error bodies
        answered.clear()
        first = await client.get(f"/v1/bank-feed{query}", headers=headers)
        again = await client.get(f"/v1/bank-feed{query}", headers=headers)
        assert answered == [fast, fast], name
        slow = await without_fast_path(
            app,
            monkeypatch,
            lambda query=query, headers=headers: client.get(f"/v1/bank-feed{query}", headers=headers),
        )
        assert comparable(first) == comparable(again) == comparable(slow), name


async def test_a_database_error_leaves_the_request_to_the_route(
    client, user_headers, business, monkeypatch, routed
):
    headers = user_headers(business)
    first = await client.get("/v1/bank-feed", headers=headers)
    current = ViewCache._current
    failures = []

    async def fails_once(self, business_id):  # type: ignore[no-untyped-def]
        if not failures:
            failures.append(business_id)
            raise OSError("connection lost")
        return await current(self, business_id)

    monkeypatch.setattr(ViewCache, "_current", fails_once)
    monkeypatch.setattr(ViewCache, "trusted_epoch", lambda self: None)  # as while the listener is down
    second = await client.get("/v1/bank-feed", headers=headers)

    assert (second.status_code, second.content) == (200, first.content)
    assert routed == [business, business]


class TestWithCors:
    @pytest.fixture
    def settings(self, settings):  # type: ignore[no-untyped-def]
        settings.cors_origins = ["http://spa.test"]
        return settings

    async def test_a_cross_origin_read_gets_its_cors_headers_from_the_route(
        self, client, user_headers, business, routed
    ):
        headers = user_headers(business)
        await client.get("/v1/bank-feed", headers=headers)

        same_origin = await client.get("/v1/bank-feed", headers=headers)
        cross_origin = await client.get("/v1/bank-feed", headers={**headers, "Origin": "http://spa.test"})

        assert "access-control-allow-origin" not in same_origin.headers
        assert cross_origin.headers["access-control-allow-origin"] == "http://spa.test"
        assert routed == [business, business]


class TestLink:
    async def test_a_valid_link_is_answered_exactly_as_the_route_answers_it(
        self, app, settings, client, user_headers, business, monkeypatch, answered
    ):
        headers = {**user_headers(business), "X-Request-ID": "same-correlation-id"}
        connected = await client.post("/v1/bank-feed/connect", headers=headers)
        answered.clear()

        fast = await client.get("/v1/bank-feed/link", headers=headers)
        slow = await without_fast_path(
            app, monkeypatch, lambda: client.get("/v1/bank-feed/link", headers=headers)
        )

        assert answered == [not settings.uses_sqlite]  # the stored link is read over raw asyncpg
        assert comparable(fast) == comparable(slow)
        assert fast.json()["linkUrl"] == connected.json()["linkUrl"]
        assert fast.headers["cache-control"] == "no-store"

    async def test_a_lapsed_link_and_a_business_without_one_go_to_the_route(
        self, client, sandbox, user_headers, business, answered
    ):
        headers = user_headers(business)
        not_connected = await client.get("/v1/bank-feed/link", headers=headers)
        connected = await client.post("/v1/bank-feed/connect", headers=headers)
        for _ in range(2):  # kept by this process's link cache, on Postgres
            assert (await client.get("/v1/bank-feed/link", headers=headers)).status_code == 200
        sandbox.clock.advance(3600)  # our clock too: the stored link has lapsed
        answered.clear()

        refreshed = await client.get("/v1/bank-feed/link", headers=headers)

        assert not_connected.status_code == 409
        assert answered == [False]
        assert refreshed.status_code == 200
        assert refreshed.json()["linkUrl"] != connected.json()["linkUrl"]
