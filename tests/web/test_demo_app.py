"""The demo is served only next to the sandbox (`dev`), signed in as the demo business's user."""

import httpx

from app.config import Settings
from app.demo import DEMO_BUSINESS_ID, register_demo_business
from app.main import create_app


async def test_the_sandbox_brings_the_demo_page_and_its_scripts(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    script = await client.get("/demo/js/main.js")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/demo/js/main.js">' in page.text
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


async def test_the_demo_token_reads_the_demo_business(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    await register_demo_business(app.state.sessionmaker)

    token = (await client.get("/demo/token")).json()["token"]
    feed = await client.get("/v1/bank-feed", headers={"Authorization": f"Bearer {token}"})

    assert feed.status_code == 200
    assert feed.json()["businessId"] == DEMO_BUSINESS_ID


async def test_without_the_sandbox_there_is_no_demo() -> None:
    app = create_app(Settings(environment="test"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        for path in ("/", "/demo/token", "/demo/js/main.js"):
            assert (await http.get(path)).status_code == 404, path
