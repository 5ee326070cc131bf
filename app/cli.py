"""`bankfeeds-bff dev | serve | worker | prune | migrate | sandbox | dev-token`."""

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from prometheus_client import start_http_server

from app import metrics, migrate
from app.auth.tokens import mint_end_user_token, mint_service_token
from app.config import Environment, Settings, get_settings
from app.metrics import MULTIPROC_ENV
from app.observability import configure_logging
from app.serving import uvicorn_options

if TYPE_CHECKING:
    from app.transactions.worker import WorkerConfig

WORKER_STARTUP_SECONDS = 60
DEV_SERVICE_SCOPES = ["businesses:write", "bank-feed:read", "transactions:write", "transactions:read"]


def dev_settings(host: str, port: int) -> Settings:
    """`dev`: SQLite, the embedded sandbox as Codat, known dev secrets; the environment may still override."""
    os.environ.setdefault("BANKFEEDS_ENVIRONMENT", Environment.dev.value)
    os.environ.setdefault("BANKFEEDS_SANDBOX__ENABLED", "true")
    os.environ.setdefault("BANKFEEDS_SANDBOX__PUBLIC_URL", f"http://{host}:{port}/sandbox")
    os.environ.setdefault("BANKFEEDS_SANDBOX__WEBHOOK_URL", f"http://{host}:{port}/webhooks/codat")
    os.environ.setdefault("BANKFEEDS_SANDBOX__REDIRECT_URL", f"http://{host}:{port}/")
    get_settings.cache_clear()
    return get_settings()


def run_dev(args: argparse.Namespace) -> None:
    from app.demo import DEMO_BUSINESS_ID
    from app.main import create_app

    settings = dev_settings(args.host, args.port)
    configure_logging(settings.log_level)
    migrate.upgrade(settings.database.url)
    app = create_app(settings)
    asyncio.run(_register_demo_business(settings))
    base = f"http://{args.host}:{args.port}"
    print(
        DEV_BANNER.format(
            base=base,
            user_token=mint_end_user_token(settings.auth, DEMO_BUSINESS_ID),
            service_token=mint_service_token(settings.auth, "dev-cli", DEV_SERVICE_SCOPES),
            database=settings.database.url,
        ),
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **uvicorn_options(settings))


async def _register_demo_business(settings: Settings) -> None:
    from app.db import create_engine, create_sessionmaker
    from app.demo import register_demo_business

    engine = create_engine(settings)
    try:
        await register_demo_business(create_sessionmaker(engine))
    finally:
        await engine.dispose()


DEV_BANNER = """
bankfeeds-bff dev is running at {base}  (database: {database}; Codat: the embedded sandbox)

  Demo app         {base}/   (the "Connect account to QuickBooks" button, as the demo user)
  API docs         {base}/docs
  Sandbox portal   {base}/sandbox/_sandbox/
  Demo business    demo-business (US), accounts acc-checking, acc-savings, acc-card

  End-user token (demo-business):
    export USER_TOKEN={user_token}
  Internal service token (scopes {scopes}):
    export SERVICE_TOKEN={service_token}

  Try:  curl -s -X POST -H "Authorization: Bearer $USER_TOKEN" {base}/v1/bank-feed/connect
""".replace("{scopes}", " ".join(DEV_SERVICE_SCOPES))


def run_serve(args: argparse.Namespace) -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    if args.workers > 1:
        use_fresh_metrics_directory()
    uvicorn.run(
        "app.main:create_served_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        access_log=False,  # RequestContextMiddleware writes one JSON line a request
        # A worker answers the supervisor's pings only once it has imported the app, which on a busy 2-core
        # machine took more than uvicorn's 5 s: the supervisor then killed and restarted it, forever.
        timeout_worker_healthcheck=WORKER_STARTUP_SECONDS,
        **uvicorn_options(settings),
    )


def use_fresh_metrics_directory() -> None:
    """prometheus-client's multiprocess mode for the workers uvicorn is about to start (new interpreters that
    read the variable as they import prometheus_client): each writes its samples there, and any worker's
    /metrics adds all of them up (app/metrics.py). Emptied first: an earlier run's samples would count too."""
    directory = Path(os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="bankfeeds-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)


def run_worker(args: argparse.Namespace) -> None:
    from app.transactions.worker import WorkerConfig

    settings = get_settings()
    if settings.sandbox.enabled:
        sys.exit("worker: with the embedded sandbox (dev), the server delivers transactions in-process")
    configure_logging(settings.log_level)
    if settings.ops.worker_metrics_port:
        start_http_server(settings.ops.worker_metrics_port, registry=metrics.registry())
    config = WorkerConfig(concurrency=args.concurrency, lease_seconds=args.lease_seconds)
    asyncio.run(_run_workers(settings, config))


async def _run_workers(settings: Settings, config: "WorkerConfig") -> None:
    """Transactions to Codat and events to the fintech's services, side by side until stopped."""
    from app.events.worker import run_standalone as run_events
    from app.transactions.worker import run_standalone as run_transactions

    events = asyncio.create_task(run_events(settings))
    try:
        await run_transactions(settings, config)
    finally:
        events.cancel()
        await asyncio.gather(events, return_exceptions=True)


def run_prune(args: argparse.Namespace) -> None:
    """For cron: delete what retention allows, in batches, then print how many rows went from each table."""
    from app.clock import SystemClock
    from app.db import create_engine, create_sessionmaker
    from app.retention import prune

    settings = get_settings()
    configure_logging(settings.log_level)

    async def once() -> dict[str, int]:
        engine = create_engine(settings, application_name="bankfeeds-bff-prune")
        try:
            return await prune(create_sessionmaker(engine), settings.retention, SystemClock())
        finally:
            await engine.dispose()

    print(json.dumps(asyncio.run(once())))


def run_migrate(args: argparse.Namespace) -> None:
    migrate.upgrade(get_settings().database.url, args.revision)


def run_sandbox(args: argparse.Namespace) -> None:
    from app.sandbox import SandboxConfig, create_sandbox_app

    uvicorn.run(create_sandbox_app(SandboxConfig()), host=args.host, port=args.port, log_level="warning")


def run_dev_token(args: argparse.Namespace) -> None:
    os.environ.setdefault("BANKFEEDS_ENVIRONMENT", Environment.dev.value)
    get_settings.cache_clear()
    auth = get_settings().auth
    if args.business:
        print(mint_end_user_token(auth, args.business))
    else:
        print(mint_service_token(auth, args.service, args.scope or DEV_SERVICE_SCOPES))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="bankfeeds-bff", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    for name, handler, default_port in (
        ("dev", run_dev, 8000),
        ("serve", run_serve, 8000),
        ("sandbox", run_sandbox, 8001),
    ):
        command = commands.add_parser(name)
        command.add_argument("--host", default="127.0.0.1")
        command.add_argument("--port", type=int, default=default_port)
        command.set_defaults(handler=handler)
    commands.choices["serve"].add_argument("--workers", type=int, default=1)
    worker = commands.add_parser("worker", help="deliver accepted transactions to Codat (run one or many)")
    worker.add_argument("--concurrency", type=int, default=8, help="accounts delivered at once")
    worker.add_argument(
        "--lease-seconds", type=float, default=30.0, help="how long a dead worker's accounts wait"
    )
    worker.set_defaults(handler=run_worker)
    commands.add_parser("prune", help="delete rows past their retention, in batches (for cron)").set_defaults(
        handler=run_prune
    )
    migrate_cmd = commands.add_parser("migrate", help="apply the database migrations (Alembic)")
    migrate_cmd.add_argument("revision", nargs="?", default="head")
    migrate_cmd.set_defaults(handler=run_migrate)
    token = commands.add_parser("dev-token", help="print a token signed with the dev secret")
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--business", help="an end-user token for this business id")
    who.add_argument("--service", help="a service token for this service name")
    token.add_argument("--scope", nargs="+", help="scopes of the service token")
    token.set_defaults(handler=run_dev_token)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main(sys.argv[1:])
