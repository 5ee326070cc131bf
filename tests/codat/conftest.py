import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import respx
from pydantic import SecretStr

from app.codat.client import CodatClient, build_http_client
from app.config import CodatSettings

API_KEY = "codat-test-api-key-6b1f0c"
BASE_URL = "https://api.codat.test"


class FakeClock:
    """A monotonic clock that only moves when the client sleeps (or a test moves it)."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def settings() -> CodatSettings:
    return CodatSettings(api_key=SecretStr(API_KEY), base_url=BASE_URL)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE_URL, assert_all_called=False)


@pytest.fixture
async def http(settings: CodatSettings, router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with build_http_client(settings, transport=httpx.MockTransport(router.async_handler)) as http:
        yield http


@pytest.fixture
def make_client(
    http: httpx.AsyncClient, settings: CodatSettings, clock: FakeClock
) -> Callable[..., CodatClient]:
    """A CodatClient on the mocked Codat, with settings overridden by keyword."""

    def make(**overrides: object) -> CodatClient:
        return CodatClient(http, settings.model_copy(update=overrides), sleep=clock.sleep, clock=clock)

    return make


@pytest.fixture
def client(make_client: Callable[..., CodatClient]) -> CodatClient:
    return make_client()
