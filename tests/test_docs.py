"""/docs: Swagger UI from this process's own assets (it works offline), on in dev and test, off in prod unless
BANKFEEDS_API__DOCS_ENABLED says otherwise."""

import re

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.factories import prod_settings_values


def prod_settings(**api: bool) -> Settings:
    values = prod_settings_values()
    values["database"]["url"] = "sqlite+aiosqlite:///unused.sqlite3"
    return Settings(**values, api=api)


async def _get(settings: Settings, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://bff") as client:
        return await client.get(path)


async def test_docs_load_every_asset_from_this_server(settings: Settings) -> None:
    page = await _get(settings, "/docs")

    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by this process"
        assert (await _get(settings, asset)).status_code == 200, asset
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text


@pytest.mark.parametrize(("api", "status"), [({}, 404), ({"docs_enabled": True}, 200)])
async def test_docs_are_off_in_prod_unless_enabled(api: dict[str, bool], status: int) -> None:
    assert (await _get(prod_settings(**api), "/docs")).status_code == status
