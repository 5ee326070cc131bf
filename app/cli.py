"""`bankfeeds-bff dev | serve | worker | prune | migrate | sandbox | dev-token | healthcheck`."""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import uvicorn
from prometheus_client import start_http_server
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError
from sqlalchemy.engine import make_url

from app import metrics, migrate
from app.auth.tokens import mint_end_user_token, mint_service_token
from app.config import DEV_SANDBOX_API_KEY, DatabaseOnlySettings, Environment, Settings, get_settings
from app.metrics import MULTIPROC_ENV
from app.observability import configure_logging
from app.serving import uvicorn_options

if TYPE_CHECKING:
    from app.transactions.worker import WorkerConfig

WORKER_STARTUP_SECONDS = 60
SettingsT = TypeVar("SettingsT", bound=BaseSettings)
DEV_SERVICE_SCOPES = ["businesses:write", "bank-feed:read", "transactions:write", "transactions:read"]


def dev_settings(host: str, port: int) -> Settings:
    """`dev`: SQLite, the embedded sandbox as Codat, known dev secrets; the environment may still override."""
    os.environ.setdefault("BANKFEEDS_ENVIRONMENT", Environment.dev.value)
    os.environ.setdefault("BANKFEEDS_SANDBOX__ENABLED", "true")
    os.environ.setdefault("BANKFEEDS_SANDBOX__PUBLIC_URL", f"http://{host}:{port}/sandbox")
    os.environ.setdefault("BANKFEEDS_SANDBOX__WEBHOOK_URL", f"http://{host}:{port}/webhooks/codat")
    os.environ.setdefault("BANKFEEDS_SANDBOX__REDIRECT_URL", f"http://{host}:{port}/")
    get_settings.cache_clear()
    return load_settings_or_exit(get_settings)


def run_dev(args: argparse.Namespace) -> None:
    from app.demo import DEMO_BUSINESS_ID
    from app.main import create_app

    settings = dev_settings(args.host, args.port)
    configure_logging(settings.log_level)
    print(_start_afresh(settings.database.url), flush=True)
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


def _start_afresh(database_url: str) -> str:
    """The embedded sandbox (Codat, here) keeps its state in memory and loses it on restart, so dev's
    database starts afresh with it: a stored company, connection or link would name what the sandbox lost."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        kept = url.render_as_string(hide_password=True)
        return (
            f"Note: the embedded sandbox starts empty, but {kept} is kept: its stored connections and links"
            " are unknown to the sandbox (use the default SQLite file)."
        )
    database = Path(url.database)
    for path in (database, *(database.with_name(database.name + end) for end in ("-wal", "-shm"))):
        path.unlink(missing_ok=True)
    return (
        f"Starting afresh: the embedded sandbox keeps its state in memory, so {database} was emptied too"
        " (connect again in the demo)."
    )


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
    settings = load_settings_or_exit(get_settings)  # here: a bad configuration is one message, no traceback
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
        forwarded_allow_ips=args.forwarded_allow_ips,
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

    settings = load_settings_or_exit(get_settings)
    if settings.sandbox.enabled:
        sys.exit("worker: with the embedded sandbox (dev), the server delivers transactions in-process")
    configure_logging(settings.log_level)
    if settings.ops.worker_metrics_port:
        start_http_server(settings.ops.worker_metrics_port, registry=metrics.registry())
    config = WorkerConfig(concurrency=args.concurrency, lease_seconds=args.lease_seconds)
    # On uvloop, as uvicorn runs the server: its socket writes and callbacks cost a fraction of asyncio's
    # own, and a worker makes several round trips (Postgres, Codat) per push, whatever the push's size.
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run_workers(settings, config))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # uvicorn[standard]'s, where it builds (not on Windows)
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run_workers(settings: Settings, config: "WorkerConfig") -> None:
    """Transactions to Codat and events to the fintech's services, side by side until stopped."""
    from app.events.worker import run_standalone as run_events
    from app.housekeeping import housekeeping
    from app.transactions.worker import run_standalone as run_transactions

    events = asyncio.create_task(run_events(settings))
    try:
        # The backlog gauges and retention run beside delivery, on the worker's sessions.
        await run_transactions(
            settings, config, alongside=lambda sessions, clock: housekeeping(sessions, settings, clock)
        )
    finally:
        events.cancel()
        await asyncio.gather(events, return_exceptions=True)


def run_prune(args: argparse.Namespace) -> None:
    """For cron: delete what retention allows, in batches, then print how many rows went from each table."""
    from app.clock import SystemClock
    from app.db import create_engine, create_sessionmaker
    from app.retention import prune

    settings = load_settings_or_exit(get_settings)
    configure_logging(settings.log_level)

    async def once() -> dict[str, int]:
        engine = create_engine(settings, application_name="bankfeeds-bff-prune")
        try:
            return await prune(create_sessionmaker(engine), settings.retention, SystemClock())
        finally:
            await engine.dispose()

    print(json.dumps(asyncio.run(once())))


def run_migrate(args: argparse.Namespace) -> None:
    url = load_settings_or_exit(DatabaseOnlySettings).database.url
    before = migrate.current_revision(url)
    migrate.upgrade(url, args.revision)
    after = migrate.current_revision(url)
    where = make_url(url).render_as_string(hide_password=True)
    if before == after:
        print(f"migrate: {where} is already at revision {after}; nothing to do")
    else:
        print(f"migrate: {where} upgraded from revision {before or '(empty database)'} to {after}")


def run_sandbox(args: argparse.Namespace) -> None:
    from app.sandbox import SandboxConfig, create_sandbox_app

    config = SandboxConfig(api_keys=[args.api_key], webhook_url=args.webhook_url)
    base = f"http://{args.host}:{args.port}"
    print(
        SANDBOX_BANNER.format(
            base=base,
            api_key=args.api_key,
            webhook_secret=config.webhook_secret,
            webhook_url=args.webhook_url or "none (pass --webhook-url)",
        ),
        flush=True,
    )
    uvicorn.run(create_sandbox_app(config), host=args.host, port=args.port, log_level="warning")


SANDBOX_BANNER = """
Codat sandbox (Bank Feeds API, QuickBooks Online Bank Feeds) is running; its state is in memory.

  URL              {base}   (use it as Codat's base URL; the index page says more)
  API key          {api_key}   (send "Authorization: Basic base64(key)", as to Codat)
  Admin            {base}/_sandbox/   (Portal switches, fault knobs, clock; POST {base}/_sandbox/reset)
  Webhook secret   {webhook_secret}   (Standard Webhooks signatures)
  Webhooks to      {webhook_url}
"""


def run_dev_token(args: argparse.Namespace) -> None:
    os.environ.setdefault("BANKFEEDS_ENVIRONMENT", Environment.dev.value)
    get_settings.cache_clear()
    auth = load_settings_or_exit(get_settings).auth
    if args.business:
        print(mint_end_user_token(auth, args.business))
    else:
        print(mint_service_token(auth, args.service, args.scope))


def run_healthcheck(args: argparse.Namespace) -> None:
    """Exit 0 when `serve` on this machine answers /healthz with 200 (the container's HEALTHCHECK)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/healthz", timeout=args.timeout) as answer:
            healthy = answer.status == 200
    except OSError as exc:
        sys.exit(f"healthcheck: http://127.0.0.1:{args.port}/healthz did not answer: {exc}")
    sys.exit(0 if healthy else 1)


def _port_from_environment() -> int:
    # The container sets BANKFEEDS_PORT once; `serve` and `healthcheck` both follow it.
    return int(os.environ.get("BANKFEEDS_PORT", "8000"))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="bankfeeds-bff", description=DESCRIPTION, formatter_class=_Formatter)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], None], help: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, formatter_class=_Formatter)
        sub.set_defaults(handler=handler)
        return sub

    def listen(sub: argparse.ArgumentParser, port: int) -> None:
        sub.add_argument("--host", default="127.0.0.1", help="interface to listen on")
        sub.add_argument("--port", type=int, default=port, help="TCP port to listen on")

    dev = command(
        "dev", run_dev, "run everything on this machine: SQLite, the embedded sandbox, the demo app"
    )
    listen(dev, 8000)
    serve = command(
        "serve", run_serve, "serve the API in production (never migrates, never runs the sandbox)"
    )
    listen(serve, _port_from_environment())
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        help="trusted proxies (IPs, comma-separated, or *) for X-Forwarded-*; env FORWARDED_ALLOW_IPS",
    )
    worker = command("worker", run_worker, "deliver accepted transactions to Codat (run one or many)")
    worker.add_argument("--concurrency", type=int, default=8, help="accounts delivered at once")
    worker.add_argument(
        "--lease-seconds", type=float, default=30.0, help="how long a dead worker's accounts wait"
    )
    command("prune", run_prune, "delete rows past their retention, in batches (for cron)")
    migrate_cmd = command(
        "migrate", run_migrate, "apply the database migrations (Alembic); needs only BANKFEEDS_DATABASE__URL"
    )
    migrate_cmd.add_argument("revision", nargs="?", default="head", help="the Alembic revision to reach")
    sandbox = command(
        "sandbox", run_sandbox, "run the Codat sandbox alone, for your own tests (state in memory)"
    )
    listen(sandbox, 8001)
    sandbox.add_argument("--api-key", default=DEV_SANDBOX_API_KEY, help="the API key the sandbox accepts")
    sandbox.add_argument("--webhook-url", default=None, help="where the sandbox delivers Codat's webhooks")
    token = command("dev-token", run_dev_token, "print a token signed with the dev secret")
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--business", help="an end-user token for this business id")
    who.add_argument("--service", help="a service token for this service name")
    token.add_argument("--scope", nargs="+", default=DEV_SERVICE_SCOPES, help="scopes of the service token")
    health = command("healthcheck", run_healthcheck, "exit 0 if `serve` on this machine answers /healthz")
    health.add_argument(
        "--port", type=int, default=_port_from_environment(), help="the port `serve` listens on"
    )
    health.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    return root


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option shows its default (an option without one says nothing rather than "None")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


DESCRIPTION = """\
A backend-for-frontend that puts small businesses' bank feeds into QuickBooks Online through Codat.
Configuration comes from BANKFEEDS_* environment variables (see the README's "Configuration")."""


def load_settings_or_exit(load: Callable[[], SettingsT]) -> SettingsT:
    """The settings, or one message naming every unusable environment variable (never its value); exit 2."""
    try:
        return load()
    except (ValidationError, SettingsError) as exc:
        print(configuration_error(exc), file=sys.stderr)
        raise SystemExit(2) from None


def configuration_error(exc: ValidationError | SettingsError) -> str:
    if isinstance(exc, SettingsError):
        problems = [str(exc)]  # pydantic-settings names the field and not its value
    else:
        problems = [
            _problem(error["loc"], error["msg"])
            for error in exc.errors(include_input=False, include_url=False)
        ]
    lines = [line for problem in problems for line in problem.splitlines()]
    return "bankfeeds-bff: the configuration is not usable:\n" + "\n".join(f"  - {line}" for line in lines)


def _problem(location: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")
    if not location:  # a model-level check, whose message names its variables itself
        return message
    return "BANKFEEDS_" + "__".join(str(part).upper() for part in location) + ": " + message


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main(sys.argv[1:])
