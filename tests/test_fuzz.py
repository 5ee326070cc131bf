"""schemathesis over the whole OpenAPI document, valid and invalid cases, with an end-user token and a service
token: no 5xx, no status the document does not declare, no answer that breaks its schema. A small budget: it
runs with the suite."""

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.auth.tokens import mint_end_user_token, mint_service_token
from app.config import Settings
from app.main import create_app
from tests.conftest import TEST_API_KEY
from tests.factories import ACCOUNTS

BUSINESS = "fuzz-biz"
SCOPES = ["businesses:write", "bank-feed:read", "transactions:write", "transactions:read", "webhooks:admin"]
EXAMPLES = 6  # per operation and token kind: a smoke budget for the suite
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def served(database_url: str) -> Iterator[tuple[str, dict[str, dict[str, str]]]]:
    """The BFF, with its own sandbox as Codat, under uvicorn in a thread of its own (schemathesis is
    synchronous), a business registered and connected; the two kinds of token."""
    app_settings = Settings(
        environment="test",
        database={"url": database_url},
        sandbox={"enabled": True, "api_key": TEST_API_KEY, "public_url": "http://test/sandbox"},
        codat={"max_attempts": 1},
        webhooks={"reconcile_interval_seconds": 0},
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(app_settings), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    tokens = {
        "user": {"Authorization": f"Bearer {mint_end_user_token(app_settings.auth, BUSINESS)}"},
        "service": {"Authorization": f"Bearer {mint_service_token(app_settings.auth, 'fuzzer', SCOPES)}"},
    }
    with httpx.Client(base_url=url, headers=tokens["service"]) as http:
        http.put(f"/internal/v1/businesses/{BUSINESS}", json={"name": "Fuzz LLC", "country": "US"})
        for account_id, body in ACCOUNTS.items():
            http.put(f"/internal/v1/businesses/{BUSINESS}/accounts/{account_id}", json=body)
        http.post("/v1/bank-feed/connect", headers=tokens["user"])
    yield url, tokens
    server.should_exit = True
    thread.join(timeout=10)


def test_the_api_answers_only_what_it_declares(served):  # type: ignore[no-untyped-def]
    url, tokens = served
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        # schemathesis' own pytest plumbing does not run on pytest 9 yet: hypothesis directly, per operation.
        @given(case=st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in GenerationMode)))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case):  # type: ignore[no-untyped-def]
            for headers in tokens.values():  # each case with both kinds of token
                case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collected, so that every operation is fuzzed and reported
            failures[operation.label] = str(exc)[:2000]

    assert failures == {}
