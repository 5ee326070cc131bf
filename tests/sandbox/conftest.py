"""Every sandbox the tests build is wrapped by the contract checker; any response that breaks Codat's
OpenAPI files fails the test that caused it."""

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from app.sandbox import SandboxConfig, create_sandbox_app
from tests.contract import ContractChecked, contract_checked
from tests.sandbox.support import AUTH, Sandbox

_checked: list[ContractChecked] = []


@pytest.fixture(autouse=True)
def _codat_contract() -> Iterator[None]:
    _checked.clear()
    yield
    violations = [violation for app in _checked for violation in app.violations]
    _checked.clear()
    if violations:
        pytest.fail("the sandbox broke Codat's contract:\n" + "\n".join(violations), pytrace=False)


SandboxFactory = Callable[..., ContractChecked]


@pytest.fixture
def make_sandbox_app() -> SandboxFactory:
    """``make_sandbox_app(config=None, **create_sandbox_app kwargs)``: a contract-checked sandbox app."""

    def make(config: SandboxConfig | None = None, **kwargs: Any) -> ContractChecked:
        app = contract_checked(create_sandbox_app(config or SandboxConfig(seed=7), **kwargs))
        _checked.append(app)
        return app

    return make


@pytest.fixture
async def sandbox(make_sandbox_app: SandboxFactory) -> AsyncIterator[Sandbox]:
    app = make_sandbox_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test", headers=AUTH) as client:
        yield Sandbox(app, client)
    app.state.sandbox.webhooks.reset()
