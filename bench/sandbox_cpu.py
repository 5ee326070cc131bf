"""The sandbox's CPU a call on the two calls the transactions worker makes for each push, in-process.

The sandbox app (as ``bankfeeds-bff sandbox`` serves it) is called as an ASGI app, one request at a time, and
the process's CPU time is divided by the requests: ``POST …/push/bankAccounts/{accountId}/bankTransactions``
(with an Idempotency-Key, as the worker sends it) and ``GET /companies/{companyId}/push/{pushOperationKey}``.
HTTP parsing and writing are left out. State: N companies, each with a Linked QBO connection and 5 connected
accounts (set up through the sandbox's API, linked in-process). Pushes of 1 transaction show the fixed cost a
call; pushes of 100 add what the sandbox spends per transaction.
"""

import argparse
import asyncio
import base64
import json
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

from app.config import DEV_SANDBOX_API_KEY
from app.sandbox import SandboxConfig, create_sandbox_app
from app.sandbox.lifecycle import Lifecycle
from app.sandbox.state import SandboxState
from bench import harness as h

AUTH = b"Basic " + base64.b64encode(DEV_SANDBOX_API_KEY.encode())
ACCOUNTS_PER_COMPANY = 5


async def call(
    app: Any, method: str, path: str, body: Any = None, key: str | None = None
) -> tuple[int, bytes]:
    raw = json.dumps(body).encode() if body is not None else b""
    headers = [(b"host", b"127.0.0.1:8001"), (b"authorization", AUTH), (b"accept", b"application/json")]
    if body is not None:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    if key:
        headers.append((b"idempotency-key", key.encode()))
    scope = h.asgi_scope(method, path, headers, server=("127.0.0.1", 8001)) | {"state": {}}
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def set_up(app: Any, companies: int) -> list[tuple[str, str, str]]:
    """(company, connection, account) of every account; each connection Linked, its accounts connected."""
    state: SandboxState = app.state.sandbox
    life = Lifecycle(state, "http://127.0.0.1:8001")
    targets = []
    for n in range(companies):
        _, company = await call(app, "POST", "/companies", {"name": f"business {n}"})
        company_id = json.loads(company)["id"]
        body = {"platformKey": "hcws"}
        _, connection = await call(app, "POST", f"/companies/{company_id}/connections", body)
        connection_id = json.loads(connection)["id"]
        path = f"/companies/{company_id}/connections/{connection_id}/connectionInfo/bankFeedAccounts"
        for a in range(ACCOUNTS_PER_COMPANY):
            account = {
                "id": f"ac-{a}",
                "accountName": f"account {a}",
                "accountType": "checking",
                "accountNumber": "12345670",
                "currency": "USD",
                "balance": 0,
            }
            status, text = await call(app, "POST", path, account)
            assert status == 200, text
            targets.append((company_id, connection_id, f"ac-{a}"))
        connection_obj = state.connections[connection_id]
        credentials = state.issue_credentials(connection_obj)
        life.connect_accounts(connection_obj, connection_obj.accounts.values(), date.today(), credentials)
    return targets


def transactions(size: int) -> list[dict[str, Any]]:
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return [
        {"id": uuid.uuid4().hex, "date": when, "description": "coffee", "amount": -3.5, "balance": 100.0}
        for _ in range(size)
    ]


async def measure(app: Any, targets: list[tuple[str, str, str]], size: int, rounds: int) -> dict[str, float]:
    posts, gets = 0.0, 0.0
    for r in range(rounds):
        company_id, connection_id, account_id = targets[r % len(targets)]
        connection = f"/companies/{company_id}/connections/{connection_id}"
        path = f"{connection}/push/bankAccounts/{account_id}/bankTransactions"
        body = {"accountId": account_id, "transactions": transactions(size)}
        started = time.process_time()
        status, answer = await call(app, "POST", path, body, key=uuid.uuid4().hex)
        posts += time.process_time() - started
        assert status == 200, answer
        operation_key = json.loads(answer)["pushOperationKey"]
        while operation_key in app.state.sandbox.pending_pushes:  # as by the worker's next call
            await asyncio.sleep(0)  # the push completes (pushCompletionSeconds 0)
        started = time.process_time()
        status, answer = await call(app, "GET", f"/companies/{company_id}/push/{operation_key}")
        gets += time.process_time() - started
        assert status == 200, answer
    return {"post": posts / rounds * 1e6, "get": gets / rounds * 1e6}


async def main(companies: int, rounds: int, repeats: int, sizes: list[int]) -> None:
    app = create_sandbox_app(SandboxConfig(seed=7))
    targets = await set_up(app, companies)
    await measure(app, targets, 1, 500)  # warm-up
    print(f"{companies} companies, {len(targets)} accounts: CPU µs a call, best of {repeats} × {rounds}")
    print("| push size | POST bankTransactions | GET push operation |")
    print("|---|---|---|")
    for size in sizes:
        runs = [await measure(app, targets, size, rounds) for _ in range(repeats)]
        post, get = min(r["post"] for r in runs), min(r["get"] for r in runs)
        print(f"| {size} | {post:.0f} | {get:.0f} |")
    app.state.sandbox.webhooks.reset()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100], help="transactions a push")
    args = parser.parse_args()
    asyncio.run(main(args.companies, args.rounds, args.repeats, args.sizes))
