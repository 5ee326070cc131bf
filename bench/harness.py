"""What every bench shares: a fresh database, the sandbox and the BFF as subprocesses on 127.0.0.1, wrk, a
bounded async load client and a markdown table. Every process started here is stopped here, by its id."""

import asyncio
import datetime as dt
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from app import migrate
from app.auth.tokens import mint_end_user_token, mint_service_token
from app.clock import SystemClock
from app.config import DEV_SANDBOX_API_KEY, Settings
from app.db import create_engine, create_sessionmaker

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PY_SPY = Path(PYTHON).with_name("py-spy")
PG_SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
UVICORN = [
    "--host",
    "127.0.0.1",
    "--loop",
    "uvloop",
    "--http",
    "app.serving:HttpProtocol",
    "--no-access-log",
    "--log-level",
    "warning",
]
AUTH = Settings(environment="test").auth  # the dev secret the BFF uses with BANKFEEDS_ENVIRONMENT=test
SERVICE_HEADERS = {
    "Authorization": "Bearer " + mint_service_token(AUTH, "bench", ["businesses:write", "bank-feed:read"])
}


def user_headers(business_id: str, user: str = "bench-user") -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_end_user_token(AUTH, business_id, subject=user)}


def asgi_scope(
    method: str, path: str, headers: list[tuple[bytes, bytes]], server: tuple[str, int] = ("127.0.0.1", 80)
) -> dict[str, Any]:
    """An HTTP request's ASGI scope, for calling an app in-process; a caller adds "state" per call."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": server,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Database


def fresh_database(name: str) -> str:
    """Drop and create database `name` on the bench server, migrate it with Alembic; its URL."""
    import asyncpg

    server = make_url(PG_SERVER)
    dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(admin())
    url = server.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


def sql(url: str, statement: str, *args: object) -> str:
    """Run one statement on the bench database (setup only, never during a measurement)."""
    import asyncpg

    async def run() -> str:
        connection = await asyncpg.connect(
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            return await connection.execute(statement, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


# Processes


@contextmanager
def process(
    command: Sequence[str], ready_url: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """Start `command` in a session of its own, wait until `ready_url` answers; stop it (SIGTERM, SIGKILL)."""
    env = {**os.environ, **(env or {})}
    # Its output goes to stderr: stdout is for the tables.
    proc = subprocess.Popen(list(command), cwd=ROOT, env=env, start_new_session=True, stdout=sys.stderr)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{shlex.join(command)} exited with {proc.returncode}")
            try:
                if httpx.get(ready_url, timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} did not answer within 30 s")
            time.sleep(0.1)
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this module started, and only it
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def sandbox() -> Iterator[str]:
    """`bankfeeds-bff sandbox` on its own port: one Codat for every BFF worker, with one set of counters."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([PYTHON, "-m", "app.cli", "sandbox", "--port", str(port)], f"{url}/_sandbox/knobs"):
        yield url


def bff_env(database_url: str, codat_url: str) -> dict[str, str]:
    return {
        "BANKFEEDS_ENVIRONMENT": "test",  # the dev secrets are allowed, the sandbox is not refused
        "BANKFEEDS_DATABASE__URL": database_url,
        "BANKFEEDS_CODAT__BASE_URL": codat_url,
        "BANKFEEDS_CODAT__API_KEY": DEV_SANDBOX_API_KEY,
        "BANKFEEDS_LOG_LEVEL": "WARNING",
    }


def serve_command(workers: int, port: int) -> list[str]:
    """The BFF as `bankfeeds-bff serve` runs it: its HTTP protocol, its metrics shared by its workers."""
    return [
        PYTHON,
        "-m",
        "app.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


@contextmanager
def bff(
    database_url: str, codat_url: str, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """The BFF served by `bankfeeds-bff serve`; `env` adds to or overrides its settings."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = serve_command(workers, port)
    with process(command, f"{url}/healthz", {**bff_env(database_url, codat_url), **(env or {})}) as proc:
        yield url, proc


@contextmanager
def bare() -> Iterator[tuple[str, subprocess.Popen]]:
    """The bare FastAPI endpoint of bench/bare_app.py, served by uvicorn as `serve` serves the BFF (the same
    loop, parser and HTTP protocol; one worker)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        PYTHON,
        "-m",
        "uvicorn",
        "bench.bare_app:create_app",
        "--factory",
        "--port",
        str(port),
        *UVICORN,
    ]
    with process(command, f"{url}/bare", {"BANKFEEDS_ENVIRONMENT": "test"}) as proc:
        yield url, proc


# Setting up state through the BFF's own API


async def register(http: httpx.AsyncClient, business_id: str, accounts: int, concurrently: int = 1) -> None:
    """A US business with `accounts` bank accounts, registered by an internal service."""
    response = await http.put(
        f"/internal/v1/businesses/{business_id}",
        json={"name": f"{business_id} LLC", "country": "US"},
        headers=SERVICE_HEADERS,
    )
    response.raise_for_status()
    gate = asyncio.Semaphore(concurrently)

    async def account(n: int) -> None:
        body = {
            "name": f"Account {n}",
            "accountType": "checking",
            "accountNumber": f"0001234{n:05d}",
            "routingNumber": "021000021",
            "currency": "USD",
            "balance": "1000.00",
        }
        async with gate:
            response = await http.put(
                f"/internal/v1/businesses/{business_id}/accounts/acc-{n:03d}",
                json=body,
                headers=SERVICE_HEADERS,
            )
        response.raise_for_status()

    await asyncio.gather(*(account(n) for n in range(accounts)))


async def register_with(base_url: object, business_id: str, accounts: int, concurrently: int = 1) -> None:
    async with httpx.AsyncClient(base_url=str(base_url), timeout=30) as http:
        await register(http, business_id, accounts, concurrently)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# Load


WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_TOTAL = re.compile(r"(\d+) requests in")
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_SOCKET = re.compile(r"Socket errors: (.*)")
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def machine_ticks() -> list[int]:
    """The machine's CPU ticks so far (/proc/stat): user, nice, system, idle, iowait, irq, softirq, steal."""
    return [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def machine_use(before: list[int], after: list[int]) -> tuple[float, float]:
    """How busy the machine was between two machine_ticks(), and how much the host stole, as fractions."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta) or 1
    return 1 - (delta[3] + delta[4]) / total, delta[7] / total


def wrk(
    url: str,
    headers: dict[str, str],
    seconds: int,
    connections: int = 64,
    threads: int = 2,
    script: Path | None = None,
) -> dict[str, Any]:
    """`wrk --latency` for a fixed time: req/s, p50 and p99 in ms, requests, errors, machine use."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(script)] if script else []
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    ticks = machine_ticks()
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    busy, steal = machine_use(ticks, machine_ticks())
    latency = {p: float(v) * UNIT_MS[u] for p, v, u in WRK_LATENCY.findall(out)}
    non_2xx = WRK_NON_2XX.search(out)
    socket_errors = WRK_SOCKET.search(out)
    return {
        "rps": float(WRK_RATE.search(out).group(1)),  # type: ignore[union-attr]
        "p50": latency["50"],
        "p99": latency["99"],
        "requests": int(WRK_TOTAL.search(out).group(1)),  # type: ignore[union-attr]
        "errors": (non_2xx.group(1) if non_2xx else "0")
        + (f"; {socket_errors.group(1)}" if socket_errors else ""),
        "busy": busy,
        "steal": steal,
    }


def worker_cpu_seconds(proc: subprocess.Popen) -> dict[int, float]:
    """User+system CPU so far of each uvicorn worker (the server itself when it runs one worker)."""
    import psutil

    root = psutil.Process(proc.pid)
    workers = [p for p in root.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())] or [root]
    return {p.pid: sum(p.cpu_times()[:2]) for p in workers}


def cpu_seconds(proc: subprocess.Popen) -> float:
    """User+system CPU of a server and its worker processes so far."""
    import psutil

    root = psutil.Process(proc.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


class Reply:
    __slots__ = ("status", "headers", "body", "seconds")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, seconds: float) -> None:
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def json(self) -> Any:
        return json.loads(self.body)


Request = tuple[str, str, dict[str, str]]  # method, path, headers


async def load(base_url: str, requests: Sequence[Request], connections: int) -> list[Reply]:
    """Send `requests` over `connections` keep-alive HTTP/1.1 connections, each one request at a time.

    A few lines of asyncio instead of httpx: httpx's connection pool spends milliseconds a request when
    hundreds of requests wait for a connection, and would measure itself rather than the server.
    """
    url = httpx.URL(base_url)
    queue = iter(enumerate(requests))
    replies: list[Reply | None] = [None] * len(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            for index, (method, path, headers) in queue:
                head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                started = time.perf_counter()
                writer.write(f"{method} {path} HTTP/1.1\r\nHost: {url.host}\r\n{head}\r\n".encode("latin-1"))
                replies[index] = await _read_reply(reader, started)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(min(connections, len(requests)))))
    return replies  # type: ignore[return-value]


async def _read_reply(reader: asyncio.StreamReader, started: float) -> Reply:
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Reply(int(status_line.split()[1]), headers, body, time.perf_counter() - started)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# Reporting


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(columns))) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"Linux {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} CPU ({cpu}), {memory_gib:.0f} GiB, {system}"


def header(title: str) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"## {title}\n\n{now} · {machine()}\n\n`{shlex.join(['python', '-m', *_module_argv()])}`\n",
        flush=True,
    )


def _module_argv() -> list[str]:
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    return [spec.name if spec else sys.argv[0], *sys.argv[1:]]


async def project_events(database_url: str) -> float:
    """Run the events projector until it finds nothing left to project; how long it took."""
    # Imported here: bench.steps runs this module beside earlier commits' app, which have no app.events.
    from app.events.worker import EventWorker, events_http_client

    settings = Settings(environment="test", database={"url": database_url})
    engine = create_engine(settings)
    started = time.perf_counter()
    try:
        async with events_http_client() as http:
            worker = EventWorker(create_sessionmaker(engine), http, SystemClock(), settings)
            while await worker.project():
                pass
    finally:
        await engine.dispose()
    return time.perf_counter() - started
