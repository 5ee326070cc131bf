"""Helpers for the sandbox tests: auth header, request bodies, and serving an ASGI app on a loopback port."""

import base64
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from app.config import DEV_SANDBOX_API_KEY


def basic_auth(api_key: str = DEV_SANDBOX_API_KEY) -> str:
    return "Basic " + base64.b64encode(api_key.encode()).decode()


AUTH = {"Authorization": basic_auth()}


def account_body(account_id: str = "ac-001", **overrides: Any) -> dict[str, Any]:
    """The seed's checking account, as a v2 source-account body."""
    body = {
        "id": account_id,
        "accountName": f"account {account_id}",
        "accountType": "checking",
        "accountNumber": "12345670",
        "sortCode": "12-34-56",
        "currency": "USD",
        "balance": 4002,
    }
    return {**body, **overrides}


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free 127.0.0.1 port in a background thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_until_started(server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def _wait_until_started(server: uvicorn.Server) -> None:
    for _ in range(500):
        if server.started:
            return
        threading.Event().wait(0.01)
    raise RuntimeError("uvicorn did not start")


class Sandbox:
    """An in-process sandbox: its httpx client (authenticated) and state."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.state = app.state.sandbox

    async def company(self, name: str = "Bank of Dave") -> dict[str, Any]:
        response = await self.client.post("/companies", json={"name": name})
        assert response.status_code == 200, response.text
        return response.json()

    async def connection(self, company_id: str | None = None) -> dict[str, Any]:
        company_id = company_id or (await self.company())["id"]
        response = await self.client.post(
            f"/companies/{company_id}/connections", json={"platformKey": "hcws"}
        )
        assert response.status_code == 200, response.text
        return {**response.json(), "companyId": company_id}

    @staticmethod
    def accounts_path(connection: dict[str, Any]) -> str:
        company_id, connection_id = connection["companyId"], connection["id"]
        return f"/companies/{company_id}/connections/{connection_id}/connectionInfo/bankFeedAccounts"

    async def account(self, connection: dict[str, Any], account_id: str = "ac-001", **overrides: Any) -> dict:
        response = await self.client.post(
            self.accounts_path(connection), json=account_body(account_id, **overrides)
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def accounts(self, connection: dict[str, Any]) -> list[dict[str, Any]]:
        response = await self.client.get(self.accounts_path(connection))
        assert response.status_code == 200, response.text
        return response.json()


ERROR_FIELDS = {
    "statusCode",
    "service",
    "error",
    "correlationId",
    "validation",
    "canBeRetried",
    "detailedErrorCode",
}


def assert_codat_error(response: httpx.Response, status: int, item_id: str | None = None) -> dict[str, Any]:
    """The response is Codat's ErrorMessage with ``status``; with ``item_id``, a validation error names it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_FIELDS
    assert body["statusCode"] == status
    assert body["correlationId"]
    assert isinstance(body["canBeRetried"], str)
    if item_id is not None:
        assert item_id in [e["itemId"] for e in body["validation"]["errors"]], body
    return body
