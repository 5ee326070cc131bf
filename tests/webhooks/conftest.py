import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn


@pytest.fixture
async def live_url(app, sandbox) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """The BFF served by uvicorn on a loopback port; the sandbox delivers its webhooks there."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    sandbox.set_settings(webhook={"url": f"{url}/webhooks/codat"})
    yield url
    server.should_exit = True
    await task
