"""`bankfeeds-bff serve` as an operator runs it, in a subprocess: metrics that add up across workers, and a
SIGTERM that lets every request in flight finish and closes the event streams with a reconnect event."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from app.auth.tokens import mint_end_user_token, mint_service_token
from app.config import Settings
from tests.factories import ACCOUNTS

pytestmark = pytest.mark.slow
GRACE_SECONDS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(database_url: str, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Yields once: the running `serve` and its URL (a generator, so that `for` stops it whatever happens)."""
    port = free_port()
    log = tempfile.TemporaryFile()  # not a pipe: nobody reads it while it runs, and a full pipe blocks it
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
        env={
            **os.environ,
            "BANKFEEDS_ENVIRONMENT": "test",
            "BANKFEEDS_DATABASE__URL": database_url,
            "BANKFEEDS_SANDBOX__ENABLED": "true",
            "BANKFEEDS_SANDBOX__PUBLIC_URL": f"{url}/sandbox",
            "BANKFEEDS_WEBHOOKS__RECONCILE_INTERVAL_SECONDS": "0",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,  # its own process group: stopped by its id, workers included
    )
    try:
        _wait_until_up(process, url, log)
        yield process, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
    for _ in range(600):
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"serve exited: {log.read().decode()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:  # not the route the test counts
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not come up")


def livez_count(metrics: str) -> float:
    match = re.search(
        r'^bff_http_requests_total\{method="GET",route="/livez",status="200"\} (\S+)$', metrics, re.M
    )
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"left by an earlier run")  # serve must empty it first
    return directory


def test_metrics_add_up_across_two_workers(database_url, metrics_dir):
    requests = 300
    for _, url in serve(database_url, "--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)):
        for _ in range(requests):
            with httpx.Client() as fresh:  # a new connection each: the kernel spreads them over the workers
                assert fresh.get(f"{url}/livez").status_code == 200
        scrapes = []
        for _ in range(6):
            with httpx.Client() as fresh:
                scrapes.append(livez_count(fresh.get(f"{url}/metrics").text))
        writers = {p.name.split("_")[1] for p in metrics_dir.glob("counter_*.db")}

    assert len(writers) == 2  # both workers served and counted
    assert scrapes == [requests] * 6  # whichever worker answers the scrape


def test_sigterm_answers_requests_in_flight_and_ends_streams_with_a_reconnect_event(database_url):
    auth = Settings(environment="test").auth
    service = {"Authorization": "Bearer " + mint_service_token(auth, "test", ["businesses:write"])}
    user = {"Authorization": "Bearer " + mint_end_user_token(auth, "biz-sigterm")}
    for process, url in serve(database_url, BANKFEEDS_OPS__SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS)):
        with httpx.Client(base_url=url) as http:
            http.put(
                "/internal/v1/businesses/biz-sigterm",
                json={"name": "Shutdown Ltd", "country": "US"},
                headers=service,
            )
            for account_id, account in ACCOUNTS.items():
                http.put(
                    f"/internal/v1/businesses/biz-sigterm/accounts/{account_id}",
                    json=account,
                    headers=service,
                )
            # Every Codat call takes 1.5 s: a connect (several calls) is in flight when SIGTERM comes.
            http.put("/sandbox/_sandbox/knobs", json={"latencyMs": 1500}).raise_for_status()
        streams, in_flight = asyncio.run(_shutdown_under_load(process, url, user))
        exit_code = process.wait(timeout=GRACE_SECONDS)

    assert exit_code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it stopped on
    assert [status for status in in_flight] == [200] * 5
    assert len(streams) == 20
    for events in streams:
        assert events.startswith("event: ready")
        assert events.rstrip().endswith(
            'event: reconnect\nretry: 1000\ndata: {"reason": "server shutting down"}'
        )


async def _shutdown_under_load(
    process: subprocess.Popen[bytes], url: str, user: dict[str, str]
) -> tuple[list[str], list[int]]:
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=50)) as http:
        opened = asyncio.Queue[None]()

        async def stream() -> str:
            text = ""
            async with http.stream("GET", "/v1/bank-feed/events", headers=user) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_text():
                    if not text:
                        opened.put_nowait(None)
                    text += chunk
            return text

        async def connect(key: int) -> int:
            answer = await http.post(
                "/v1/bank-feed/connect", headers={**user, "Idempotency-Key": f"sigterm-{key}"}
            )
            return answer.status_code

        streams = [asyncio.create_task(stream()) for _ in range(20)]
        for _ in streams:
            await opened.get()
        requests = [asyncio.create_task(connect(i)) for i in range(5)]
        await asyncio.sleep(0.5)  # the connects are waiting on Codat
        process.send_signal(signal.SIGTERM)
        return await asyncio.gather(*streams), await asyncio.gather(*requests)
