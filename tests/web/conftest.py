"""The demo as `bankfeeds-bff dev` serves it, and headless Chromium to use it.

`demo` runs the BFF under uvicorn on a loopback port, wired the way `dev` wires it (the transactions worker
in-process; the sandbox's links, webhooks and "Return to" link all point at that port), with the demo business
registered; `demo_url` is its address.
"""

import asyncio
import shutil
import socket
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import uvicorn
from playwright.sync_api import Browser, Page

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.demo import register_demo_business
from app.main import create_app
from tests.browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.browser import chromium
from tests.conftest import _empty_tables

ARTIFACTS = BROWSER_ARTIFACTS / "demo"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        shutil.rmtree(ARTIFACTS, ignore_errors=True)  # no screenshot left over from an earlier run
        ARTIFACTS.mkdir(parents=True)
        yield launched


@pytest.fixture
def page(browser: Browser, demo_url: str) -> Iterator[Page]:
    """A fresh browser profile; closed before the server stops, so no event stream is left open."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    yield context.new_page()
    context.close()


@dataclass(frozen=True)
class Demo:
    url: str
    settings: Settings


@pytest.fixture
def demo_url(demo: Demo) -> str:
    return demo.url


@pytest.fixture
def demo(database_url: str) -> Iterator[Demo]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        environment="dev",
        database={"url": database_url},
        sandbox={
            "enabled": True,
            "public_url": f"{base}/sandbox",
            "webhook_url": f"{base}/webhooks/codat",
            "redirect_url": f"{base}/",
        },
    )
    run_async(_register_demo_business(settings))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                pytest.fail("the BFF did not start under uvicorn")
            threading.Event().wait(0.01)
        yield Demo(base, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        run_async(_empty_tables(database_url))


def run_async(coroutine: Coroutine[object, object, None]) -> None:
    """asyncio.run in a thread of its own: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()


async def _register_demo_business(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await register_demo_business(create_sessionmaker(engine))
    finally:
        await engine.dispose()
